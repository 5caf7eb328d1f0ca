"""What a student controls, class by class (issue: grading on hostile input, round two): names,
archives, debug information, output sizes. Each case asserts the exact outcome; the same
classes run through `harness grade` in a real guest in tests/vm/test_grading.py."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from craft import ENCRYPTED, zip_of

from harness.build import Builder, BuildResult, ModuleBuildError, parse_diagnostics
from harness.grade.extract import UnsafeSubmission, extract
from harness.grade.report import gradebook_csv, gradescope, html_report, junit_xml
from harness.grade.roster import find_submissions, student_key
from harness.grade.runner import StudentResult
from harness.grade.spec import load_spec
from harness.hostbuild import SandboxLimits, read_build_archive
from harness.kmod import guest_folder_name
from harness.oops.detect import Frame
from harness.oops.logtext import unescape
from harness.oops.symbolize import locate
from harness.untrusted import (
    UNTRUSTED_FILE,
    confined_file,
    display_name,
    one_line,
    run_on_untrusted,
    sandbox_available,
    visible,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llist-assignment"
CORRECT = EXAMPLE / "submissions" / "correct"

# Names an LMS export or a hostile student can give a submission folder.
HOSTILE_NAMES = [
    "José García (late)", "quote's \"double\" $HOME #1; a&b: c,d 100%", "new\nline",
    "L" * 255, os.fsdecode(b"Jos\xe9 Latin-1"), "-rf", ".hidden", "=HYPERLINK(\"x\")",
    "+1", "@SUM(A1)", "tab\tname", "back\\slash",
]


# -- 1. a student's name decides nothing ----------------------------------------------------------
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_name_gets_a_key_kbuild_and_every_file_format_take(name):
    key = student_key(name)
    assert key.isascii() and len(key) <= 64 and key[0].isalnum()
    assert all(c.isalnum() or c in "_.-" for c in key), key
    assert key == student_key(name)  # stable: a re-run finds the student's folder again
    shown = display_name(name)
    assert "\n" not in shown and shown.encode("utf-8")  # no raw newline, no lone surrogate


def test_plain_names_stay_their_own_key_and_hostile_ones_do_not_collide():
    assert student_key("alice") == "alice" and student_key("bob_2.v1") == "bob_2.v1"
    keys = {student_key(name) for name in HOSTILE_NAMES}
    assert len(keys) == len(HOSTILE_NAMES)
    assert student_key("José García (late)").startswith("Jose_Garcia_late-")


def test_the_guest_build_folder_never_depends_on_what_the_name_holds(tmp_path):
    # kbuild refuses M= paths with spaces ("building multiple external modules is not
    # supported"); the guest folder is the name reduced to what it takes, plus a path hash.
    for name in HOSTILE_NAMES:
        folder = tmp_path / name
        folder.mkdir()
        guest = guest_folder_name(folder)
        assert all(c.isalnum() or c in "_.-" for c in guest) and len(guest) <= 49, guest
    assert guest_folder_name(tmp_path / "José García (late)").startswith("Jos_Garc_a_late-")
    assert guest_folder_name(tmp_path / "-rf") != guest_folder_name(tmp_path / "rf")


def test_every_entry_is_a_row_and_shared_names_are_both_graded(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in HOSTILE_NAMES:
        shutil.copytree(CORRECT, subs / name)
    shutil.copytree(CORRECT, subs / "alice")
    (subs / "alice.zip").write_bytes(b"not a zip")
    (subs / "notes.txt").write_text("not a submission")
    (subs / ".DS_Store").write_bytes(b"\0")
    # A folder named exactly like another student's generated key.
    shutil.copytree(CORRECT, subs / student_key("José García (late)"))
    entries, litter = find_submissions(subs)
    assert litter == [".DS_Store (macOS folder settings)"]
    assert len(entries) == len(HOSTILE_NAMES) + 4  # every entry but the litter
    assert len({e.key for e in entries}) == len(entries)  # no two share a folder
    alice = [e for e in entries if e.name in ("alice", "alice.zip")]
    assert {e.key for e in alice} == {"alice", "alice.zip"}
    assert all("2 submissions for alice (alice, alice.zip)" in e.note for e in alice)
    twins = [e for e in entries if e.key.startswith("Jose_Garcia_late-")]
    assert len(twins) == 2 and all("same folder name" in e.note for e in twins)


def _grade_without_a_vm(tmp_path, monkeypatch, subs: Path) -> tuple[list, Path, dict]:
    """`grade` up to the test session, whose records are written as if every test passed."""
    from harness.grade import runner

    out = tmp_path / "out"
    ran: dict = {}

    def fake_tests(spec, out, pending, *args):
        ran.update(pending)
        points = runner.max_points(spec)
        for key in pending:
            folder = out / "students" / key / "tests"
            folder.mkdir(parents=True)
            for test, value in points.items():
                (folder / f"{test}.json").write_text(json.dumps({
                    "test": test, "outcome": "passed", "points": value, "earned": value,
                    "message": "", "seconds": 1.0, "crashes": [], "diagnostics": [],
                    "kernel_lines": ["llist: \x01\x1b[31m red \x00 nul"]}))

    monkeypatch.setattr(runner, "_run_tests", fake_tests)
    results = runner.grade(subs, EXAMPLE / "assignment.yaml", out)
    return results, out, ran


def test_hostile_names_grade_like_plain_ones_and_every_output_stays_valid(tmp_path,
                                                                          monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in HOSTILE_NAMES:
        shutil.copytree(CORRECT, subs / name)
    results, out, ran = _grade_without_a_vm(tmp_path, monkeypatch, subs)
    assert len(results) == len(HOSTILE_NAMES) == len(ran)
    assert {r.status for r in results} == {"graded"} and {r.score for r in results} == {10}
    # Every module folder unpacked under the key, with the student's sources.
    assert all((Path(entry["module_dir"]) / "llist.c").is_file() for entry in ran.values())
    # The gradebook: a spreadsheet runs no formula.
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    assert len(rows) == len(HOSTILE_NAMES)
    for row in rows:
        assert not row["student"].startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert {"'=HYPERLINK(\"x\")", "'+1", "'@SUM(A1)", "'-rf", "Jos\\xe9 Latin-1",
            "new\\nline"} <= {row["student"] for row in rows}
    # JUnit XML is well-formed; results.json files are strict UTF-8 JSON.
    ET.parse(out / "junit.xml")
    assert "\x01" not in (out / "junit.xml").read_text()
    for path in out.rglob("*.json"):
        json.loads(path.read_bytes().decode("utf-8"))
    page = (out / "report.html").read_text()
    assert "\x00" not in page and "\\x01" in page


def test_one_unreadable_submission_never_ends_the_run(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(CORRECT, subs / "good")
    zip_of(CORRECT, subs / "encrypted.zip", flag=ENCRYPTED)
    zip_of(CORRECT, subs / "zstd.zip", method=93)
    (subs / "loop").mkdir()
    shutil.copytree(CORRECT, subs / "loop" / "src")
    os.symlink("self", subs / "loop" / "src" / "self")
    shutil.copytree(CORRECT, subs / os.fsdecode(b"bad\xffname"))
    (subs / os.fsdecode(b"bad\xffname") / os.fsdecode(b"inner\xfe.c")).write_text("x")
    (subs / "dangling.zip").symlink_to(tmp_path / "nowhere")
    (subs / "linked").symlink_to(subs / "good")  # the teacher's own link: followed
    (subs / "notes.rar").write_bytes(b"Rar!")
    results, out, ran = _grade_without_a_vm(tmp_path, monkeypatch, subs)
    by_name = {r.student: r for r in results}
    assert set(by_name) == {"good", "encrypted", "zstd", "loop", "bad\\xffname", "dangling",
                            "linked", "notes.rar"}
    assert by_name["good"].score == by_name["linked"].score == 10
    assert sorted(ran) == ["good", "linked"]
    reasons = {name: r.reason for name, r in by_name.items() if r.status == "rejected"}
    assert reasons == {
        "encrypted": "the zip is encrypted (password-protected): submit it without a password",
        "zstd": "the zip uses compression method 93, which the grader cannot read: make it "
                "with zip's default (deflate)",
        "loop": "a symlink that leads nowhere or in a loop: src/self",
        "bad\\xffname": "a file name that is not valid UTF-8 or holds control characters: "
                        "inner\\xfe.c (rename the file)",
        "dangling": "the submission is a symbolic link that leads nowhere (or in a loop)",
        "notes.rar": "not a folder, .zip or .tar.gz: notes.rar",
    }
    assert len(list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))) == 8
    ET.parse(out / "junit.xml")


def test_a_folder_linking_out_or_to_a_folder_is_refused(tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(CORRECT, sub)
    os.symlink("/etc/passwd", sub / "passwd.c")
    with pytest.raises(UnsafeSubmission, match="symlink pointing out of the submission"):
        extract(sub, tmp_path / "out")
    os.unlink(sub / "passwd.c")
    os.symlink("llist.c", sub / "copy.c")  # a link inside: taken as the file it names
    assert (extract(sub, tmp_path / "out") / "copy.c").read_text() == \
        (CORRECT / "llist.c").read_text()


# -- 2. debug information is student input -----------------------------------------------------
SECRET = "grader-secret-7f3c"


@pytest.fixture
def lying_object(tmp_path, monkeypatch):
    """An object whose debug information names host files for its lines: `#line` with
    /proc/self/environ, an absolute host file, a path climbing out with .., and a link."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this host")
    monkeypatch.setenv("HARNESS_TEST_SECRET", SECRET)
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text(f"{SECRET} from a host file\n")
    build = tmp_path / "work" / "student"
    build.mkdir(parents=True)
    os.symlink(host_file, build / "linked.c")
    (build / "evil.c").write_text(
        'int f5(int *p) { return *p + 5; }\n'  # the file's own line 1
        '#line 1 "/proc/self/environ"\nint f1(int *p) { return *p + 1; }\n'
        f'#line 1 "{host_file}"\nint f2(int *p) {{ return *p + 2; }}\n'
        '#line 1 "../../host-secret.txt"\nint f3(int *p) { return *p + 3; }\n'
        '#line 1 "linked.c"\nint f4(int *p) { return *p + 4; }\n')
    subprocess.run(["gcc", "-g", "-O0", "-c", "evil.c", "-o", "evil.o"], cwd=build, check=True)
    return build


@pytest.mark.parametrize("function", ["f1", "f2", "f3", "f4"])
def test_debug_information_naming_host_files_reads_none_of_them(lying_object, function):
    found = locate(lying_object / "evil.o", Frame(function, 4, 0x20, None, 0),
                   return_address=False, source_roots=[lying_object])
    assert found, "addr2line placed nothing"
    assert all(place.source is None for place in found), found
    assert SECRET not in repr(found)


def test_the_build_folders_own_source_is_still_shown(lying_object):
    found = locate(lying_object / "evil.o", Frame("f5", 4, 0x20, None, 0),
                   return_address=False, source_roots=[lying_object])
    assert found[0].line == 1 and found[0].source == "int f5(int *p) { return *p + 5; }"


def test_programs_reading_a_students_file_see_only_that_file(tmp_path, monkeypatch):
    """binutils parse a student's .ko on the grading host: whatever a crafted file makes them
    do, they see the host's programs and that file, no other file and no environment."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed here (scripts/setup.sh installs it)")
    assert sandbox_available()
    monkeypatch.setenv("HARNESS_TEST_SECRET", SECRET)
    secret = tmp_path / "grader-secret.txt"
    secret.write_text(f"{SECRET}\n")
    student_file = tmp_path / "student.ko"
    student_file.write_text("the student's bytes\n")
    assert run_on_untrusted(["cat", UNTRUSTED_FILE], student_file) == "the student's bytes\n"
    assert run_on_untrusted(["cat", str(secret)], student_file) == ""
    assert SECRET not in run_on_untrusted(["env"], student_file)
    assert SECRET not in run_on_untrusted(["cat", "/proc/1/environ"], student_file)
    assert run_on_untrusted(["ls", "/root", "/home", str(ROOT)], student_file) == ""
    assert run_on_untrusted(["ls", "/etc"], student_file) == "ld.so.cache\n"
    assert run_on_untrusted(["cat", "/proc/net/dev"], student_file).count(":") == 1  # lo


def test_a_program_reading_a_students_file_that_never_ends_is_stopped(tmp_path):
    student_file = tmp_path / "student.ko"
    student_file.write_text("")
    assert run_on_untrusted(["sh", "-c", "echo started; exec sleep 60"], student_file,
                            timeout=2) == ""


def test_confined_files_are_inside_and_never_through_a_link(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.c").write_text("x\n")
    os.symlink("sub", tmp_path / "linkdir")
    os.symlink("/etc/passwd", tmp_path / "sub" / "p.c")
    assert confined_file(tmp_path, "sub/a.c") == tmp_path.resolve() / "sub" / "a.c"
    for name in ("/etc/passwd", "../x", "sub/../sub/a.c", "linkdir/a.c", "sub/p.c", "sub",
                 "", "sub/a.c\0"):
        assert confined_file(tmp_path, name) is None, name


# -- 4. bounded and escaped where it lands -------------------------------------------------------
def test_visible_text_holds_nothing_a_reader_or_parser_trips_on():
    raw = "a\x00b\x1b[31mc\x7fd\x9fe" + os.fsdecode(b"\xff") + "\ufffe\n\tf\\x41"
    text = visible(raw)
    assert text == "a\\x00b\\x1b[31mc\\x7fd\\x9fe\\xff\\ufffe\n\tf\\x41"
    ET.fromstring(f"<a>{text}</a>")  # XML 1.0 takes it
    assert one_line("a\nb\tc") == "a\\nb\\tc"
    assert visible("x" * 50, 10) == "x" * 10 + "... (40 more characters not shown)"


def test_kmsg_escapes_decode_as_utf8_and_control_bytes_are_escaped_again_where_they_land():
    line = unescape(r"llist: caf\xc3\xa9 \x01\x1b[31m \xff")
    assert line == "llist: café \x01\x1b[31m \\xff"
    assert visible(line) == "llist: café \\x01\\x1b[31m \\xff"


def test_reports_escape_what_students_control():
    spec = load_spec(EXAMPLE / "assignment.yaml")
    record = {"test": "test_builds", "outcome": "failed", "points": 2, "earned": 0,
              "message": "<script>alert(1)</script>\x00" + "m" * 10_000, "seconds": 1,
              "crashes": [{"title": "BUG <img src=x>", "location": "a.c:1", "source": "<b>"}],
              "diagnostics": [{"file": "a.c", "line": 1, "severity": "warning",
                               "message": "<i>w</i>"}],
              "kernel_lines": ["<svg onload=x>\x07"]}
    evil = StudentResult("<b>mallory</b>\x00", 0, 10, "graded", "=1+1", tests=[record])
    page = html_report([evil], spec)
    for raw in ("<script>", "<img", "<svg onload", "<b>mallory", "<i>w", "\x00", "\x07"):
        assert raw not in page, raw
    ET.fromstring(junit_xml([evil], spec))
    assert len(gradescope(evil)["tests"][0]["output"]) < 2100
    row = next(csv.reader(io.StringIO(gradebook_csv([evil]).splitlines()[1])))
    assert row[0] == "<b>mallory</b>\\x00" and row[6] == "'=1+1"


def test_what_a_build_sends_back_is_bounded(tmp_path):
    import tarfile

    limits = SandboxLimits(max_outputs=3)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for index in range(5):
            info = tarfile.TarInfo(f"m{index}.ko")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    _, outputs, problems = read_build_archive(buffer.getvalue(), limits)
    assert len(outputs) == 3
    assert problems == ["the build left more than 3 .ko and .gcno files: none is taken"]


def test_a_build_error_message_shows_the_first_errors_and_counts_the_rest(tmp_path):
    log = "\n".join(f"/tmp/harness/x/llist.c:{n}:1: error: bad \x1b thing {n}"
                    for n in range(1, 5001))
    result = BuildResult(tmp_path, "/tmp/harness/x", "6.1", 2, log,
                         parse_diagnostics(log, {"/tmp/harness/x": "llist"}))
    message = str(ModuleBuildError(result))
    assert "llist/llist.c:1: error: bad \\x1b thing 1" in message
    assert "... (4980 more errors not shown)" in message and len(message) < 3000


def test_a_build_stopped_by_its_limit_is_remembered_for_the_run_but_never_cached(tmp_path):
    from harness.build import BuildCache, build_key
    from harness.hostbuild import TIMED_OUT, CompileOutcome

    class Slow:
        calls = 0

        def compile(self, *args):
            Slow.calls += 1
            return CompileOutcome(TIMED_OUT, "build stopped after 5 s\n", {})

    builder = Builder(transport=None, cache_root=tmp_path, mode="guest")  # type: ignore[arg-type]
    builder._release = "6.1"
    builder._compiler = lambda place: Slow()  # type: ignore[method-assign]
    first = builder.build(tmp_path, "/tmp/harness/x-1", "digest", timeout=5)
    again = builder.build(tmp_path, "/tmp/harness/x-1", "digest", timeout=5)
    assert first.exit_status == again.exit_status == TIMED_OUT and Slow.calls == 1
    assert BuildCache(tmp_path).load(build_key("digest", "6.1", "", "/tmp/harness/x-1")) is None
    builder.build(tmp_path, "/tmp/harness/x-1", "digest", timeout=50)  # another limit: again
    assert Slow.calls == 2


def test_the_doctor_says_whether_students_files_are_read_in_a_sandbox(monkeypatch):
    from harness import doctor

    monkeypatch.setattr(doctor, "sandbox_available", lambda: True)
    assert doctor.check_untrusted_sandbox(False).status == "ok"
    monkeypatch.setattr(doctor, "sandbox_available", lambda: False)
    check = doctor.check_untrusted_sandbox(False)
    assert check.status == "warn" and "do not grade untrusted submissions" in check.detail
    assert "bubblewrap" in check.fix
