"""The history database and the dashboard (harness.nightly): JUnit in, SQLite, HTML out."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from harness.cli import main
from harness.nightly.dashboard import Dashboard, flakiness
from harness.nightly.history import (
    SCHEMA_VERSION,
    History,
    HistoryError,
    normalize_title,
    read_results,
)

ROOT = Path(__file__).resolve().parents[2]


def junit(cases: list[tuple[str, str, dict[str, str]]], stamp: str) -> str:
    """A JUnit file as pytest writes it: (name, outcome, properties) per test."""
    body = []
    for name, outcome, properties in cases:
        props = "".join(f'<property name={quoteattr(k)} value={quoteattr(v)}/>'
                        for k, v in properties.items())
        inner = f"<properties>{props}</properties>" if props else ""
        if outcome == "failed":
            inner += '<failure message="AssertionError: assert 4 == 5">trace</failure>'
        elif outcome == "known":
            inner += ('<skipped type="pytest.xfail" message="known failure (known.yaml:1): '
                      'bug 7"/>')
        elif outcome == "skipped":
            inner += '<skipped type="pytest.skip" message="no debug box"/>'
        body.append(f'<testcase classname="tests.vm.test_x" name="{name}" time="1.5">'
                    f"{inner}</testcase>")
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
            f'errors="0" failures="0" skipped="0" tests="{len(cases)}" time="3" '
            f'timestamp="{stamp}" hostname="h">{"".join(body)}</testsuite></testsuites>')


def write_run(folder: Path, night: int, cases) -> Path:
    path = folder / f"junit-{night}.xml"
    path.write_text(junit(cases, f"2026-12-{night:02d}T02:00:00.000000+00:00"))
    return path


@pytest.mark.parametrize(("title", "key"), [
    ("BUG: unable to handle page fault for address: ffff8880deadbeef",
     "BUG: unable to handle page fault for address: ADDR"),
    ("KASAN: slab-use-after-free Read in llist_exit.isra.0",
     "KASAN: slab-use-after-free Read in llist_exit"),
    ("WARNING in race_worker.constprop.12+0x1c/0x40", "WARNING in race_worker"),
    ("BUG: soft lockup in spin_forever (CPU#1 stuck for 22s)",
     "BUG: soft lockup in spin_forever (CPU#N stuck for N)"),
    ("INFO: task insmod:1234 blocked for more than 120 seconds",
     "INFO: task insmod:N blocked for more than N seconds"),
    ("general protection fault in crashy2_exit.cold", "general protection fault in crashy2_exit"),
])
def test_one_bug_is_one_title_key(title: str, key: str):
    assert normalize_title(title) == key


def test_a_run_is_read_from_pytest_s_junit_and_stored_once(tmp_path: Path):
    path = write_run(tmp_path, 1, [
        ("test_ok", "passed", {"box": "debian-12", "kernel": "6.1.0-28-amd64"}),
        ("test_crash", "failed", {"box": "debian-12", "crash_title": "WARNING in x_init"}),
        ("test_known", "known", {}), ("test_skip", "skipped", {}),
        ("test_flaky", "passed", {"harness_flaky": "flaky: failed 1 of 2 attempts"})])
    run = read_results(path)
    assert [(r.test, r.outcome) for r in run.results] == [
        ("tests.vm.test_x::test_ok", "passed"), ("tests.vm.test_x::test_crash", "failed"),
        ("tests.vm.test_x::test_known", "known"), ("tests.vm.test_x::test_skip", "skipped"),
        ("tests.vm.test_x::test_flaky", "flaky")]
    assert run.results[0].kernel == "6.1.0-28-amd64" and run.results[0].duration == 1.5
    assert run.results[1].title == "WARNING in x_init"
    assert run.results[1].message == "AssertionError: assert 4 == 5"
    assert run.started == "2026-12-01T02:00:00+00:00"
    history = History(tmp_path / "h.sqlite")
    assert history.add(run) == 1
    assert history.add(read_results(path)) is None  # the same file again: a no-op
    assert len(history.runs()) == 1 and len(history.results()[1]) == 5


def test_what_is_not_junit_says_so_and_adds_nothing(tmp_path: Path, capsys):
    db = tmp_path / "h.sqlite"
    good = write_run(tmp_path, 1, [("test_ok", "passed", {})])
    html = tmp_path / "page.xml"
    html.write_text("<html><body>hello</body></html>")
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testsuite>")
    for bad, says in ((html, "not JUnit XML (its root is <html>"), (broken, "not JUnit XML")):
        assert main(["history", "add", str(good), str(bad), "--db", str(db)]) == 1
        assert says in capsys.readouterr().err
    assert not db.exists() or History(db).runs() == []


def test_a_database_of_another_schema_is_migrated_or_refused(tmp_path: Path):
    old = tmp_path / "v1.sqlite"
    with sqlite3.connect(old) as db:  # what the first schema version wrote
        db.executescript("""
            CREATE TABLE runs (id INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
                started TEXT NOT NULL, commit_id TEXT, source TEXT NOT NULL);
            CREATE TABLE results (run_id INTEGER NOT NULL REFERENCES runs(id),
                test TEXT NOT NULL, box TEXT, kernel TEXT, outcome TEXT NOT NULL, title TEXT,
                title_key TEXT, duration REAL);
            INSERT INTO runs VALUES (1, 'abc', '2026-11-30T02:00:00+00:00', NULL, 'old.xml');
            INSERT INTO results VALUES (1, 't::a', NULL, NULL, 'passed', NULL, NULL, 1.0);
            PRAGMA user_version = 1;""")
    history = History(old)
    assert history.version == SCHEMA_VERSION == 2
    assert history.results()[1][0].test == "t::a" and history.results()[1][0].message is None
    history.close()

    newer = tmp_path / "v9.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 9")
    with pytest.raises(HistoryError, match="schema version 9 is newer than this harness's"):
        History(newer)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE cookies (name TEXT)")
    with pytest.raises(HistoryError, match="not a harness history .* cookies"):
        History(other)
    with sqlite3.connect(other) as db:  # untouched
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("cookies",)]
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all " * 100)
    with pytest.raises(HistoryError, match="not a harness history database"):
        History(text)


KILLED_MID_ADD = """
import sys, time
from pathlib import Path
from harness.nightly.history import History, Result, Run


class Stalling(list):
    \"\"\"Results whose reading stalls half-way: the run's row is written, its results not.\"\"\"

    def __iter__(self):
        for number, result in enumerate(list.__iter__(self)):
            if number == 500:
                print("WRITING", flush=True)
                time.sleep(600)
            yield result


results = Stalling(Result(f"t::{n}", "passed") for n in range(1000))
History(Path(sys.argv[1])).add(Run("second.xml", "digest-2", "2026-12-02T02:00:00", results))
"""


def test_a_process_killed_while_adding_loses_that_run_only(tmp_path: Path):
    db = tmp_path / "h.sqlite"
    first = write_run(tmp_path, 1, [("test_ok", "passed", {})])
    assert main(["history", "add", str(first), "--db", str(db)]) == 0
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_ADD, str(db)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "WRITING\n"
    child.kill()  # in the middle of its transaction
    child.wait()
    history = History(db)
    assert [r.source for r in history.runs()] == [str(first)]
    assert [len(v) for v in history.results().values()] == [1]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # The database stays usable: the same run added again is whole.
    second = write_run(tmp_path, 2, [("test_ok", "passed", {})] * 3)
    assert main(["history", "add", str(second), "--db", str(db)]) == 0
    assert [len(v) for v in History(db).results().values()] == [1, 3]


def test_flakiness_counts_flips_between_runs():
    assert flakiness(["passed"] * 5) == 0.0
    assert flakiness(["failed"] * 5) == 0.0
    assert flakiness(["passed", "failed", "passed", "failed", "passed"]) == 1.0
    assert flakiness(["passed", "passed", "failed", "failed", "failed"]) == 0.25
    assert flakiness(["passed", "flaky", "passed"]) == 0.5
    assert flakiness(["skipped", "known"]) == 0.0


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_the_dashboard_says_what_changed_since_the_previous_run(tmp_path: Path, capsys):
    db = tmp_path / "h.sqlite"
    nights = [
        [("test_a", "passed", {"box": "debian-12"}), ("test_b", "failed", {"box": "debian-12"}),
         ("test_race", "passed", {"box": "debian-12"})],
        [("test_a", "passed", {"box": "debian-12"}),
         ("test_b", "failed", {"box": "debian-12", "crash_title": "WARNING in b_init+0x1c/0x40"}),
         ("test_race", "failed", {"box": "debian-12",
                                  "crash_title": "KASAN: use-after-free in race_worker.isra.0"})],
        [("test_a", "failed", {"box": "debian-12", "crash_title": "<script>alert(1)</script>"}),
         ("test_b", "passed", {"box": "debian-12"}),
         ("test_race", "flaky", {"box": "debian-12"}),
         ("test_race2", "failed", {"box": "debian-12",
                                   "crash_title": "KASAN: use-after-free in race_worker"})],
    ]
    paths = []
    for night, cases in enumerate(nights, start=1):
        cases = [(n, "passed", {**p, "harness_flaky": "flaky"}) if o == "flaky" else (n, o, p)
                 for n, o, p in cases]
        paths.append(write_run(tmp_path, night, cases))
    for path in paths:
        assert main(["history", "add", str(path), "--db", str(db), "--commit", "c0ffee"]) == 0
    out = tmp_path / "dash"
    assert main(["history", "report", "--db", str(db), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    history = History(db)
    dashboard = Dashboard.of(history)
    changes = dashboard.changes()
    assert [r.test for r in changes["new failures"]] == ["tests.vm.test_x::test_a",
                                                        "tests.vm.test_x::test_race2"]
    assert [r.test for r in changes["fixed"]] == ["tests.vm.test_x::test_b"]
    # race_worker's KASAN report was seen the night before under another suffix: not new.
    assert [r.title for r in changes["new crash titles"]] == ["<script>alert(1)</script>"]
    kasan = next(c for c in dashboard.crashes() if c.title.startswith("KASAN"))
    assert (kasan.count, kasan.first.started[:10], kasan.last.started[:10]) == (
        2, "2026-12-02", "2026-12-03")
    assert kasan.tests == {"tests.vm.test_x::test_race", "tests.vm.test_x::test_race2"}
    rows = {row.test: row for row in dashboard.tests()}
    assert rows["tests.vm.test_x::test_race [debian-12]"].flakiness == 1.0
    assert rows["tests.vm.test_x::test_b [debian-12]"].flakiness == 0.5
    parser = _Text()
    parser.feed(page)
    text = " ".join(parser.text)
    assert "new failures (2)" in text and "fixed (1)" in text and "new crash titles (1)" in text
    assert "c0ffee" in text


def test_an_empty_history_draws_a_page_that_says_how_to_fill_it(tmp_path: Path):
    page = Dashboard([], {}).html()
    assert "harness history add" in page
    assert main(["history", "report", "--db", str(tmp_path / "none.sqlite"),
                 "--out", str(tmp_path)]) == 1


def test_a_nightly_s_shards_given_together_are_one_run(tmp_path: Path, capsys):
    db = tmp_path / "h.sqlite"
    shard1 = write_run(tmp_path, 1, [("test_a", "passed", {}), ("test_b", "failed", {})])
    shard2 = tmp_path / "shard2.xml"
    shard2.write_text(junit([("test_c", "passed", {"box": "debian-12-debug"})],
                            "2026-12-01T01:30:00+00:00"))
    matrix = tmp_path / "matrix.json"
    matrix.write_text('{"boxes": [{"name": "debian-11", "kernel": "5.10.0-33-amd64"}], '
                      '"results": [{"test": "t::x", "box": "debian-11", "kernel": '
                      '"5.10.0-33-amd64", "outcome": "build-failed", "title": "x.c:3: error"}]}')
    files = [str(shard1), str(shard2), str(matrix)]
    assert main(["history", "add", *files, "--db", str(db)]) == 0
    assert main(["history", "add", *reversed(files), "--db", str(db)]) == 0
    assert "already in the database" in capsys.readouterr().out
    history = History(db)
    (run,) = history.runs()
    assert run.started == "2026-12-01T01:30:00+00:00"
    results = history.results()[run.id]
    assert [(r.test, r.outcome) for r in results][-1] == ("t::x", "build-failed")
    assert len(results) == 4
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": [{"test": "t", "outcome": "exploded"}]}')
    assert main(["history", "add", str(shard1), str(bad), "--db", str(db)]) == 1
    assert "unknown outcome(s) exploded" in capsys.readouterr().err
