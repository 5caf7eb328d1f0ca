"""A nightly's memory in real guests: three nights of a small suite (tests/scenarios/
scenario_nightly.py) in which crashy crashes only sometimes, each a whole pytest session with
re-runs and a known-failures file, each added to the history database; then the dashboard."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.nightly.dashboard import Dashboard
from harness.nightly.history import History

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "tests/scenarios/scenario_nightly.py"
KNOWN = """\
- test: "tests/scenarios/scenario_nightly.py::test_known_warning"
  match: "^WARNING in crashy_init"
  reason: crashy warns on purpose (mode=warn)
"""
NULL_TITLE = "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write"
# Each night, what test_sometimes_crashes' attempts do, and so its verdict with one re-run.
NIGHTS = (("ok", "passed"), ("crash ok", "flaky"), ("crash crash", "failed"))


def _night(folder: Path, number: int, schedule: str) -> tuple[subprocess.CompletedProcess, Path]:
    junit = folder / f"junit-{number}.xml"
    (folder / "schedule").write_text(schedule)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", SCENARIO, "--vm-reuse", "--vm-keep",
         "-p", "no:cacheprovider", "--vm-reruns=1", f"--vm-known-failures={folder / 'known.yaml'}",
         f"--junitxml={junit}", "-v"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "HARNESS_SCENARIO_SCHEDULE": str(folder / "schedule")})
    return proc, junit


@pytest.fixture(scope="module")
def nights(harness_session, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nightly")
    (folder / "known.yaml").write_text(KNOWN)
    db = folder / "history.sqlite"
    ran = []
    for number, (schedule, _) in enumerate(NIGHTS, start=1):
        proc, junit = _night(folder, number, schedule)
        added = subprocess.run([sys.executable, "-m", "harness.cli", "history", "add", str(junit),
                                "--db", str(db), "--commit", f"night{number}"],
                               cwd=ROOT, capture_output=True, text=True, check=False)
        ran.append((proc, junit, added))
    report = subprocess.run([sys.executable, "-m", "harness.cli", "history", "report",
                             "--db", str(db), "--out", str(folder / "dashboard")],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    return ran, db, report, folder


def _cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}


def test_each_night_is_judged_with_its_known_failure_and_its_flaky_test(nights):
    ran, *_ = nights
    for (proc, junit, added), (_, verdict) in zip(ran, NIGHTS, strict=True):
        out = proc.stdout
        # The run fails only on a failure that is neither known nor flaky.
        assert proc.returncode == (1 if verdict == "failed" else 0), out[-4000:]
        assert "test_known_warning XFAIL" in out and "known failure (" in out, out[-4000:]
        cases = _cases(junit)
        skipped = cases["test_known_warning"].find("skipped")
        assert skipped is not None and "crashy warns on purpose" in skipped.get("message", "")
        assert cases["test_steady"].find("failure") is None
        sometimes = cases["test_sometimes_crashes"]
        properties = {p.get("name"): p.get("value") for p in sometimes.iter("property")}
        assert properties["box"] and properties["kernel"]
        if verdict == "passed":
            assert "RERUN" not in out and sometimes.find("failure") is None
        if verdict == "flaky":
            assert "test_sometimes_crashes RERUN" in out and "test_sometimes_crashes FLAKY" in out
            assert "failed 1 of 2 attempts" in properties["harness_flaky"]
            assert sometimes.find("failure") is None
            assert properties["crash_title"] == NULL_TITLE  # the first attempt's crash, kept
        if verdict == "failed":
            failure = sometimes.find("failure")
            assert failure is not None and NULL_TITLE in failure.get("message", "") + (
                failure.text or "")
            assert out.count("test_sometimes_crashes RERUN") == 1
        assert added.returncode == 0 and "added as run" in added.stdout, added.stderr


def test_the_database_holds_every_night_with_one_key_per_crash(nights):
    _, db, _, _ = nights
    history = History(db)
    runs = history.runs()
    assert [r.commit for r in runs] == ["night1", "night2", "night3"]
    results = history.results()
    verdicts = [{r.test.rsplit("::", 1)[1]: r.outcome for r in results[run.id]} for run in runs]
    assert [v["test_sometimes_crashes"] for v in verdicts] == [n[1] for n in NIGHTS]
    assert {v["test_known_warning"] for v in verdicts} == {"known"}
    assert {v["test_steady"] for v in verdicts} == {"passed"}
    crashes = {c.title: c for c in Dashboard.of(history).crashes()}
    assert set(crashes) == {NULL_TITLE, "WARNING in crashy_init"}
    null = crashes[NULL_TITLE]
    assert (null.first.commit, null.last.commit, null.count) == ("night2", "night3", 2)
    assert crashes["WARNING in crashy_init"].count == 3
    # The same junit again: nothing added.
    again = subprocess.run([sys.executable, "-m", "harness.cli", "history", "add",
                            str(nights[0][0][1]), "--db", str(db)], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert "already in the database" in again.stdout
    assert len(History(db).runs()) == 3


def test_the_dashboard_says_what_the_last_night_changed(nights):
    _, db, report, folder = nights
    assert report.returncode == 0, report.stderr
    page = (folder / "dashboard" / "index.html").read_text()
    assert "new failures (1)" in page and "test_sometimes_crashes" in page
    assert "new crash titles (0)" in page  # the NULL dereference was first seen the night before
    rows = {row.test.split("::")[-1].split(" ")[0]: row
            for row in Dashboard.of(History(db)).tests()}
    assert rows["test_sometimes_crashes"].flakiness == 1.0
    assert rows["test_steady"].flakiness == 0.0
