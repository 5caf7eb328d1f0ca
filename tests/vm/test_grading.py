"""`harness grade` on the example assignment, in the real guest: every synthetic submission
gets its expected score, the reports are written, and a re-run grades nobody twice."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.hostbuild import SandboxLimits, build_uids

# Every uid a build may run as (pgrep -u takes them comma-separated).
BUILD_UIDS = ",".join(map(str, build_uids(SandboxLimits())))

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llist-assignment"


def _grade(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "grade", str(EXAMPLE / "submissions"),
         "--spec", str(EXAMPLE / "assignment.yaml"), "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )


@pytest.fixture(scope="module")
def graded(harness_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("grades")
    return _grade(out), out


def test_every_example_submission_gets_its_expected_score(graded):
    proc, out = graded
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = yaml.safe_load((EXAMPLE / "expected-scores.yaml").read_text())
    with open(out / "gradebook.csv") as handle:
        got = {row["student"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert got == {name: float(score) for name, score in expected.items()}


def test_reasons_and_crash_reports_reach_the_student(graded):
    _, out = graded
    slip = json.loads((out / "students" / "zip_slip" / "result.json").read_text())
    assert slip["status"] == "rejected" and "escaping the folder" in slip["reason"]
    assert not (out / "escaped.c").exists() and not (out / "work" / "escaped.c").exists()
    blog = json.loads((out / "students" / "null_dereference_on_exit" / "result.json").read_text())
    crashes = [c for t in blog["tests"] for c in t["crashes"]]
    assert any(c["title"] == "BUG: unable to handle kernel NULL pointer dereference in llist_exit"
               and c["location"] and "llist.c" in c["location"] for c in crashes)
    broken = json.loads((out / "students" / "compile_error" / "result.json").read_text())
    assert any("error:" in t["message"] and "llist.c:" in t["message"] for t in broken["tests"])
    panic = json.loads((out / "students" / "panic_in_init" / "result.json").read_text())
    assert any("kernel panic: llist: giving up" in c["title"]
               for t in panic["tests"] for c in t["crashes"])


def test_hostile_submissions_are_stopped_with_the_reason(graded):
    proc, out = graded
    linked = (out / "students" / "host_file_link" / "result.json").read_text()
    assert "build output zz.ko is a symbolic link: only regular files are taken" in linked
    for report in (linked, (out / "report.html").read_text(), (out / "junit.xml").read_text()):
        assert "root:x:0:0" not in report  # /etc/passwd reached no report
    never = json.loads((out / "students" / "never_ending_build" / "result.json").read_text())
    assert all("build stopped after 60 s (time_limits.build_s)" in t["message"]
               for t in never["tests"])
    looping = json.loads((out / "students" / "endless_loop_in_init" / "result.json").read_text())
    assert any("test stopped after 30 s (time_limits.test_s)" in t["message"]
               for t in looping["tests"])
    fake = json.loads((out / "students" / "fake_frees" / "result.json").read_text())
    frees = next(t for t in fake["tests"] if t["test"] == "test_frees_every_item_on_unload")
    assert "memory leak in llist_init: 6 object(s), 192 bytes" in frees["message"]
    # The CPU burners of cpu_burner's Makefile died with its build.
    assert subprocess.run(["pgrep", "-u", BUILD_UIDS],
                          capture_output=True).stdout == b""
    assert "harness: guest network isolated" in proc.stderr


def test_reports_are_written(graded):
    proc, out = graded
    assert "test_llist.py::test_builds[correct] PASSED" in proc.stderr  # ids name the file
    gradescope = json.loads((out / "gradescope" / "correct" / "results.json").read_text())
    assert gradescope["score"] == 10 and len(gradescope["tests"]) == 4
    assert "<html>" in (out / "report.html").read_text()
    assert "testsuite" in (out / "junit.xml").read_text()


def test_a_rerun_grades_nobody_twice(graded):
    _, out = graded
    again = _grade(out)
    assert again.returncode == 0
    assert again.stderr.count("already graded") == len(
        yaml.safe_load((EXAMPLE / "expected-scores.yaml").read_text()))
    assert "pytest" not in again.stderr  # no grading session was started
