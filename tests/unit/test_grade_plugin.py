"""The grading plugin (harness.grade.plugin) through pytester over the scripted guest: one
session parametrized over the students, a record per test and student, points, the time
limit, required files, and what a student's kernel lines become in the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFTEST = """
import pytest
from fakeguest import scripted_session


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory):
    session, _, _ = scripted_session(tmp_path_factory.mktemp("vm"))
    return session
"""

ASSIGNMENT_TESTS = r'''
import time

import pytest
from fakeguest import console

pytestmark = pytest.mark.vm


@pytest.mark.points(2)
def test_prints(submission, guest):
    guest.transport.log("[    1.0] llist: \x01\x1b[2J from " + submission.name)
    assert submission.name != "bob", "bob prints the wrong thing"


@pytest.mark.points(3)
def test_exit(submission, guest):
    if submission.name == "carol":
        guest.transport.log(*console("null_exit"))


def test_slow(submission):
    if submission.name == "dave":
        time.sleep(3)


def test_files(student_module):
    pass


def test_not_graded():
    pass
'''

SPEC = """
assignment: fake
module: llist
required_files: [llist.c, Makefile]
tests: test_assignment.py
time_limits: {test_s: 1, build_s: 5}
"""


@pytest.fixture
def graded(pytester: pytest.Pytester, monkeypatch, tmp_path):
    from harness import testrun

    monkeypatch.setattr(testrun, "PANIC_SETTLE_S", 0)
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.makeconftest(CONFTEST)
    tests = pytester.makepyfile(test_assignment=ASSIGNMENT_TESTS)
    (tests.parent / "assignment.yaml").write_text(SPEC)
    out = tmp_path / "out"
    students = {}
    for key in ("alice", "bob", "carol", "dave", "erin"):
        folder = tmp_path / "work" / key
        folder.mkdir(parents=True)
        (folder / "Makefile").write_text("obj-m += llist.o\n")
        if key != "erin":  # erin forgot llist.c
            (folder / "llist.c").write_text("\n")
        students[key] = {"module_dir": str(folder), "name": key.title()}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"spec": str(tests.parent / "assignment.yaml"),
                                    "out": str(out), "students": students}))
    monkeypatch.setenv("HARNESS_GRADE_OUT", str(out))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    result = pytester.runpytest("-p", "harness.grade.plugin", f"--grade-manifest={manifest}",
                                "-p", "no:cacheprovider", "-v")
    records = {(path.parent.parent.name, path.stem): json.loads(path.read_text())
               for path in out.glob("students/*/tests/*.json")}
    return result, out, records


def test_every_student_gets_a_record_of_each_graded_test(graded):
    result, out, records = graded
    tests = ("test_prints", "test_exit", "test_slow", "test_files")
    assert set(records) == {(s, t) for s in ("alice", "bob", "carol", "dave", "erin")
                            for t in tests}
    assert json.loads((out / "expected-tests.json").read_text()) == sorted(tests)
    # The students' tests run student by student: one clean kernel each.
    ids = [line.split(" ")[0] for line in result.stdout.lines if " PASSED" in line
           or " FAILED" in line]
    order = [i.split("[")[1].rstrip("]") for i in ids if "[" in i]
    assert order == sorted(order, key=["alice", "bob", "carol", "dave", "erin"].index)


def test_points_are_earned_by_passing_tests_only(graded):
    _, _, records = graded
    assert records["alice", "test_prints"]["earned"] == 2
    bob = records["bob", "test_prints"]
    assert (bob["outcome"], bob["earned"], bob["points"]) == ("failed", 0.0, 2.0)
    assert "bob prints the wrong thing" in bob["message"]
    assert records["alice", "test_slow"]["points"] == 1.0  # no points mark: one point


def test_a_crash_is_recorded_with_its_title(graded):
    _, _, records = graded
    carol = records["carol", "test_exit"]
    assert carol["outcome"] == "failed" and carol["earned"] == 0
    assert [c["title"] for c in carol["crashes"]] == [
        "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write"]


def test_the_time_limit_stops_a_test(graded):
    _, _, records = graded
    dave = records["dave", "test_slow"]
    assert dave["outcome"] == "failed"
    assert "test stopped after 1 s (time_limits.test_s)" in dave["message"]


def test_missing_required_files_fail_the_tests_that_need_the_module(graded):
    _, _, records = graded
    erin = records["erin", "test_files"]
    assert erin["outcome"] == "failed" and "missing required file(s): llist.c" in \
        erin["message"]


def test_kernel_lines_land_escaped(graded):
    _, _, records = graded
    lines = records["alice", "test_prints"]["kernel_lines"]
    assert any("llist: \\x01\\x1b[2J from alice" in line for line in lines), lines
    assert not any("\x01" in line or "\x1b" in line for line in lines)


def test_the_plugin_needs_its_manifest(pytester: pytest.Pytester):
    pytester.makepyfile(test_x="def test_x(submission): pass\n")
    result = pytester.runpytest("-p", "harness.grade.plugin", "-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*harness.grade.plugin needs --grade-manifest*"])
