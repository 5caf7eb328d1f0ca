"""Grading without a VM: the spec, safe extraction, scoring and the reports."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from harness.grade.extract import UnsafeSubmission, extract
from harness.grade.report import (
    class_view,
    gradebook_csv,
    gradescope,
    html_report,
    junit_xml,
)
from harness.grade.roster import student_name
from harness.grade.runner import StudentResult, find_submissions, max_points, score_student
from harness.grade.spec import SpecError, late_penalty_percent, load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llist-assignment"


def test_the_example_spec_loads():
    spec = load_spec(EXAMPLE / "assignment.yaml")
    assert spec.module == "llist" and spec.required_files == ("llist.c", "Makefile")
    assert spec.warnings == "penalize" and spec.test_timeout_s == 30
    assert max_points(spec) == {"test_builds": 2.0, "test_prints_every_item": 3.0,
                                "test_frees_every_item_on_unload": 3.0,
                                "test_rejects_a_negative_count": 2.0}


def _spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "t.py").write_text("def test_x(): pass\n")
    path = tmp_path / "a.yaml"
    path.write_text("assignment: a\nmodule: m\nrequired_files: [m.c]\ntests: t.py\n" + text)
    return path


@pytest.mark.parametrize(("extra", "error"), [
    ("colour: red\n", r"a.yaml: unknown key 'colour'"),
    ("build: {warnings: sometimes}\n", r"build: key 'warnings' must be one of allow, pen"),
    ("time_limits: {test_s: soon}\n", r"time_limits: key 'test_s' must be int or float"),
    ("late: {penalty_percent_per_day: 5}\n", r"late: missing key\(s\) deadline"),
    ("late: {deadline: yesterday}\n", r"late: key 'deadline' is not an ISO date-time"),
    ("kernel: {leak_check: sometimes}\n", r"kernel: key 'leak_check' must be one of auto, "),
    ("kernel: {sanitizers: all}\n", r"kernel: unknown key 'sanitizers'"),
])
def test_spec_errors_name_the_key(tmp_path, extra, error):
    with pytest.raises(SpecError, match=error):
        load_spec(_spec(tmp_path, extra))


def test_the_spec_chooses_the_box_and_leak_check_and_the_command_line_wins(tmp_path):
    spec = load_spec(_spec(tmp_path, "kernel: {box: debian-12-debug, leak_check: kmemleak}\n"))
    assert spec.pytest_args() == ["--vm-box=debian-12-debug", "--vm-leak-check=kmemleak"]
    assert load_spec(_spec(tmp_path, "")).pytest_args() == []
    import argparse

    from _pytest.config.argparsing import Parser

    from harness.plugin import pytest_addoption

    parser = Parser(_ispytest=True)
    pytest_addoption(parser)
    namespace = parser.parse_known_args([*spec.pytest_args(), "--vm-box=debian-12"],
                                        argparse.Namespace())
    assert (namespace.vm_box, namespace.vm_leak_check) == ("debian-12", "kmemleak")


def test_late_penalty_by_started_day(tmp_path):
    spec = load_spec(_spec(tmp_path, "late: {deadline: '2026-01-01T00:00:00+00:00', "
                                      "penalty_percent_per_day: 10, max_days: 3}\n"))
    deadline = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert late_penalty_percent(spec, deadline) == 0
    assert late_penalty_percent(spec, deadline + dt.timedelta(hours=1)) == 10
    assert late_penalty_percent(spec, deadline + dt.timedelta(days=2, hours=1)) == 30
    assert late_penalty_percent(spec, deadline + dt.timedelta(days=4)) == 100


def _zip(path: Path, members: dict[str, str], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
        if symlink:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, symlink)
    return path


def test_a_good_zip_unpacks_to_its_module_folder(tmp_path):
    archive = _zip(tmp_path / "alice.zip", {"alice/Makefile": "obj-m += m.o\n", "alice/m.c": ""})
    root = extract(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "alice" and (root / "Makefile").is_file()
    assert student_name(archive) == "alice"


@pytest.mark.parametrize(("members", "symlink", "reason"), [
    ({"../../evil.c": "x"}, None, "escaping the folder"),
    ({"/etc/cron.d/evil": "x"}, None, "absolute path"),
    ({"m.c": "x"}, "/etc/passwd", "symlink"),
    ({f"f{i}.c": "" for i in range(300)}, None, "too many files"),
])
def test_unsafe_zips_are_refused_and_nothing_lands_outside(tmp_path, members, symlink, reason):
    archive = _zip(tmp_path / "bad.zip", members, symlink)
    with pytest.raises(UnsafeSubmission, match=reason):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.c").exists() and not (tmp_path / "out").exists()


def _tar(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def test_tar_links_and_devices_are_refused(tmp_path):
    def with_link(tf):
        info = tarfile.TarInfo("m.c")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tf.addfile(info)

    def with_hardlink(tf):
        info = tarfile.TarInfo("m.c")
        info.type, info.linkname = tarfile.LNKTYPE, "../../etc/shadow"
        tf.addfile(info)

    def with_fifo(tf):
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)

    for name, add in (("a", with_link), ("b", with_hardlink), ("c", with_fifo)):
        with pytest.raises(UnsafeSubmission):
            extract(_tar(tmp_path / f"{name}.tar.gz", add), tmp_path / name)


def test_a_too_large_tar_is_refused(tmp_path):
    def big(tf):
        data = b"x" * 4096
        info = tarfile.TarInfo("m.c")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    with pytest.raises(UnsafeSubmission, match="more than"):
        extract(_tar(tmp_path / "big.tar.gz", big), tmp_path / "out", max_bytes=1000)


def test_a_broken_archive_is_a_reason_not_a_crash(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UnsafeSubmission, match="cannot be read"):
        extract(bad, tmp_path / "out")


def test_example_submissions_are_found():
    entries, litter = find_submissions(EXAMPLE / "submissions")
    names = {entry.key for entry in entries}
    assert litter == [] and all(entry.name == entry.key for entry in entries)
    expected = set(__import__("yaml").safe_load((EXAMPLE / "expected-scores.yaml").read_text()))
    assert names == expected


def _record(test, points, passed, diagnostics=()):
    return {"test": test, "outcome": "passed" if passed else "failed", "points": points,
            "earned": points if passed else 0.0, "message": "" if passed else "boom",
            "seconds": 1.0, "crashes": [], "diagnostics": list(diagnostics),
            "kernel_lines": ["[ 1.0] llist: created 4 items"]}


def test_scoring_with_warning_penalty_and_incomplete_students(tmp_path):
    spec = load_spec(EXAMPLE / "assignment.yaml")
    points = max_points(spec)
    tests = tmp_path / "students" / "bob" / "tests"
    tests.mkdir(parents=True)
    warning = {"file": "llist.c", "line": 29, "severity": "warning", "message": "unused"}
    for name, value in points.items():
        (tests / f"{name}.json").write_text(json.dumps(_record(name, value, True, [warning])))
    now = dt.datetime.now(dt.timezone.utc)
    bob = score_student("bob", tmp_path, spec, points, now)
    assert (bob.status, bob.score, bob.max_score, bob.warning_penalty) == ("graded", 9, 10, 1)
    (tests / "test_builds.json").unlink()
    assert score_student("bob", tmp_path, spec, points, now).status == "incomplete"


def test_reports_carry_every_student(tmp_path):
    spec = load_spec(EXAMPLE / "assignment.yaml")
    good = StudentResult("alice", 10, 10, "graded",
                         tests=[_record("test_builds", 2, True)])
    bad = StudentResult("mallory", 0, 10, "rejected", "path escaping the folder: '../x'")
    csv_text = gradebook_csv([good, bad])
    assert "alice,10,10,graded" in csv_text and "mallory,0,10,rejected" in csv_text
    assert gradescope(good)["tests"][0] == {"name": "test_builds", "score": 2, "max_score": 2,
                                            "status": "passed", "output": ""}
    assert "escaping" in gradescope(bad)["output"]
    xml = junit_xml([good, bad], spec)
    assert 'name="alice"' in xml and "llist: created 4 items" in xml
    page = html_report([good, bad], spec)
    students = page[page.index("<h2>Students</h2>"):]
    assert students.index("alice") < students.index("mallory") and "<details" in students


def test_the_class_view_groups_what_a_teacher_looks_for_first():
    crash = {"title": "BUG: unable to handle kernel NULL pointer dereference in llist_exit",
             "location": "llist.c:60", "source": "", "module_function": "llist_exit"}
    warning = {"file": "llist.c", "line": 3, "severity": "warning", "message": "unused x"}

    def student(name, score, passed, crashes=(), warnings=(), seconds=2.0):
        tests = [dict(_record(t, 2, ok, list(warnings)), crashes=list(crashes), seconds=seconds)
                 for t, ok in passed.items()]
        return StudentResult(name, score, 10, "graded", tests=tests)

    results = [student(f"s{i}", 10, {"test_builds": True, "test_frees": True}) for i in range(6)]
    results += [student("crasher1", 4, {"test_builds": True, "test_frees": False}, [crash]),
                student("crasher2", 4, {"test_builds": True, "test_frees": False}, [crash],
                        [warning]),
                student("slow", 2, {"test_builds": True, "test_frees": False}, seconds=90.0),
                StudentResult("zipper", 0, 10, "rejected", "path escaping the folder: '../x'")]
    view = class_view(results)
    assert dict(view.histogram) == {"0-1": 1, "2-3": 1, "4-5": 2, "9-10": 6} | {
        k: 0 for k in ("1-2", "3-4", "5-6", "6-7", "7-8", "8-9")}
    assert view.pass_rates == [("test_builds", 9, 9), ("test_frees", 6, 9)]
    assert view.crashes == [(crash["title"], ["crasher1", "crasher2"])]
    assert view.warnings == [("unused x", ["crasher2"])]
    assert view.not_graded == [("rejected: path escaping the folder: '../x'", ["zipper"])]
    assert view.outliers == [("slow", "180 s of tests (class median 4)")]
    page = html_report(results, load_spec(EXAMPLE / "assignment.yaml"))
    summary = page[:page.index("<h2>Students</h2>")]
    assert "<svg" in summary and "2 students</b>: BUG: unable to handle" in summary
    # The tallest bar's count sits inside the chart (it was cut off at its top edge).
    counts = re.findall(r'<text [^>]*y="([\d.]+)"[^>]*font-size="11">6<', summary)
    assert counts and all(float(y) >= 11 for y in counts), counts


def test_students_finished_before_an_interruption_are_not_graded_again(tmp_path, monkeypatch):
    from harness.grade import runner

    spec_path = EXAMPLE / "assignment.yaml"
    points = max_points(load_spec(spec_path))
    submissions = tmp_path / "subs"
    for name in ("done", "half"):
        (submissions / name).mkdir(parents=True)
        (submissions / name / "Makefile").write_text("obj-m += llist.o\n")
        (submissions / name / "llist.c").write_text("\n")
    out = tmp_path / "out"
    for name, tests in (("done", list(points)), ("half", list(points)[:2])):
        folder = out / "students" / name / "tests"
        folder.mkdir(parents=True)
        for test in tests:
            (folder / f"{test}.json").write_text(json.dumps(_record(test, points[test], True)))
    ran: list[dict] = []
    monkeypatch.setattr(runner, "_run_tests", lambda spec, out, pending, *a: ran.append(pending))
    results = {r.student: r for r in runner.grade(submissions, spec_path, out)}
    assert list(ran[0]) == ["half"]  # only the unfinished student runs again
    assert results["done"].status == "graded" and results["done"].score == 10
    assert (out / "students" / "done" / "result.json").is_file()


def test_each_student_gets_the_coverage_of_their_own_files(tmp_path):
    from harness.grade.runner import COVERAGE_DIR, student_coverage

    work = tmp_path / "work"
    summary = {"files": [
        {"source": str(work / "alice" / "llist.c"), "covered": 28, "total": 30,
         "missed": [53, 54, 60]},
        {"source": str(work / "bob" / "llist.c"), "covered": 30, "total": 30, "missed": []}],
        "problems": []}
    (tmp_path / COVERAGE_DIR / "gw1").mkdir(parents=True)  # one summary per xdist worker
    (tmp_path / COVERAGE_DIR / "gw1" / "summary.json").write_text(json.dumps(summary))
    pending = {name: {"module_dir": str(work / name)} for name in ("alice", "bob", "carol")}
    found = student_coverage(tmp_path, pending)
    assert found["alice"] == [{"source": "llist.c", "covered": 28, "total": 30,
                               "missed": [53, 54, 60]}]
    assert "carol" not in found  # nothing of hers was counted, and nothing else is said
    alice = StudentResult("alice", 10, 10, "graded", coverage=found["alice"])
    page = html_report([alice], load_spec(EXAMPLE / "assignment.yaml"))
    assert "coverage of llist.c: 28/30 lines reached by the tests (93 %); never reached: " \
           "lines 53-54, 60" in page
    assert "<span class=cov" in page and "93 % lines" in page


def test_a_vm_whose_state_cannot_be_told_is_kept_not_taken_away(tmp_path, monkeypatch):
    from harness import boxes
    from harness.errors import ConfigurationError
    from harness.grade.runner import _vm_running

    assert _vm_running(tmp_path) is False  # no VM folder at all: nobody's VM

    def broken(**kwargs):
        raise ConfigurationError("boxes.yaml: not valid YAML")

    (tmp_path / ".harness").mkdir()
    monkeypatch.setattr(boxes, "load_catalogue", broken)
    log = io.StringIO()
    assert _vm_running(tmp_path, log) is True
    assert "cannot tell whether the VM" in log.getvalue() and "not valid YAML" in log.getvalue()


def test_a_tar_of_a_million_headers_is_refused_at_the_first_over_the_limit(tmp_path):
    """A small .tar.gz can hold millions of (identical) headers: reading them all to count
    them took seconds and hundreds of MB a few hundred thousand; only max_files + 1 are read."""
    header = tarfile.TarInfo("d/x")
    archive = _tar(tmp_path / "bomb.tar.gz",
                   lambda tf: [tf.addfile(header, io.BytesIO(b"")) for _ in range(100_000)])
    assert archive.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeSubmission, match=r"too many files \(more than 200\)"):
            extract(archive, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, f"{peak} bytes held while reading the headers"
    assert not (tmp_path / "out").exists()


def test_an_archive_larger_than_the_limit_is_refused_unread(tmp_path):
    archive = _zip(tmp_path / "big.zip", {"m.c": "x"})
    with open(archive, "ab") as padding:
        padding.write(b"\0" * (2 << 20))
    with pytest.raises(UnsafeSubmission, match=r"the archive is \d+ bytes, more than the "
                                                r"1048576 allowed"):
        extract(archive, tmp_path / "out", max_bytes=1 << 20)
