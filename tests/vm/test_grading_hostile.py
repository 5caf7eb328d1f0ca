"""`harness grade` on hostile submissions, in the real guest (issue: grading on hostile input,
round two). The folder is made at test time: names git cannot hold well, secrets of the
grader's that must reach no output, and modules that switch the kmem ledger off.

Every class has its own cases, each with its exact outcome:
1. names: copies of the correct solution under LMS-export and hostile names score 10, like the
   plain one graded after them; two submissions for one name are both graded;
2. debug information: `#line` naming /proc/self/environ, an absolute host file and a path
   climbing out with `..`: the crash and leak reports name the file, the grader's secret
   environment variable and file content appear in no output;
3. unreadable submissions (encrypted zip, zstd zip, a symlink loop, an undecodable file name)
   each get a row with the reason, and grading goes on;
4. control characters in kernel lines and a build printing 50 MB land escaped and bounded;
5. a module switching the ledger's recording off (and on again, or disabling its kmalloc
   event for a while) fails the leak check saying so.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from craft import ENCRYPTED, zip_of

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llist-assignment"
SUBMISSIONS = EXAMPLE / "submissions"
CORRECT = SUBMISSIONS / "correct"
SECRET_ENV = f"grader-env-secret-{secrets.token_hex(6)}"
SECRET_FILE = f"grader-file-secret-{secrets.token_hex(6)}"

# name on disk -> the name the gradebook shows
NAMES = {
    "José García (late)": "José García (late)",
    "quote's \"x\" $HOME #1; a&b: c,d 100%": "quote's \"x\" $HOME #1; a&b: c,d 100%",
    "new\nline": "new\\nline",
    os.fsdecode(b"Jos\xe9 Latin-1"): "Jos\\xe9 Latin-1",
    "-rf": "'-rf",  # the gradebook neutralizes what a spreadsheet would run
    "=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")",
    ".hidden": ".hidden",
    "L" * 255: "L" * 255,
    "zz_plain": "zz_plain",  # graded after them all, with the same sources
}

# Two ways a module switches the ledger off: a shell started from the kernel writes the
# instance's tracing_on (kernel_write cannot: tracefs files have no write_iter), or the
# exported trace_array_set_clr_event() disables the instance's kmalloc event.
LEDGER_SWITCH = r"""
#include <linux/umh.h>
#include <linux/trace.h>
#include <linux/trace_events.h>
static void __maybe_unused ledger(const char *value)
{
	char command[128];
	char *argv[] = { "/bin/sh", "-c", command, NULL };
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };

	snprintf(command, sizeof(command), "echo %s > %s", value,
		"/sys/kernel/tracing/instances/harness-kmem/tracing_on");
	call_usermodehelper(argv[0], argv, envp, UMH_WAIT_PROC);
}

static void __maybe_unused ledger_event(bool on)
{
	struct trace_array *tr = trace_array_get_by_name("harness-kmem");

	if (!tr)
		return;
	trace_array_set_clr_event(tr, "kmem", "kmalloc", on);
	trace_array_put(tr);
}
"""


def _copy(source: Path, target: Path, edit=None) -> Path:
    shutil.copytree(source, target)
    if edit is not None:
        path = target / "llist.c"
        path.write_text(edit(path.read_text()))
    return target


def _replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def make_submissions(folder: Path, secret_file: Path) -> dict[str, float | None]:
    """The hostile folder; returns display name -> expected score (None: rejected)."""
    folder.mkdir()
    expected: dict[str, float | None] = {}
    for name, shown in NAMES.items():
        _copy(CORRECT, folder / name)
        expected[shown] = 10
    # Two submissions for one student, one right and one not: each graded on its own files.
    _copy(CORRECT, folder / "dup")
    zip_of(SUBMISSIONS / "compile_error", folder / "dup.zip")
    expected |= {"dup": 10, "dup.zip": 0}
    # Debug information naming the grader's files.
    with tarfile.open(SUBMISSIONS / "null_dereference_on_exit.tar.gz") as tar:
        tar.extractall(folder / "unpacked", filter="data")
    _copy(folder / "unpacked" / "null_exit", folder / "dwarf_environ", _replace(
        "\tb->day = 0;", '#line 1 "/proc/self/environ"\n\tb->day = 0;'))
    shutil.rmtree(folder / "unpacked")
    kmalloc = "\t\tstruct birthday *b = kmalloc(sizeof(*b), GFP_KERNEL);"
    _copy(SUBMISSIONS / "memory_not_freed", folder / "dwarf_host_file", _replace(
        kmalloc, f'#line 1 "{secret_file}"\n{kmalloc}'))
    climb = "../" * 12 + str(secret_file).lstrip("/")
    _copy(SUBMISSIONS / "memory_not_freed", folder / "dwarf_climb", _replace(
        kmalloc, f'#line 1 "{climb}"\n{kmalloc}'))
    expected |= {"dwarf_environ": 4, "dwarf_host_file": 4, "dwarf_climb": 4}
    # Submissions nobody can unpack.
    zip_of(CORRECT, folder / "encrypted.zip", flag=ENCRYPTED)
    zip_of(CORRECT, folder / "zstd.zip", method=93)
    _copy(CORRECT, folder / "loop" / "src")
    os.symlink("self", folder / "loop" / "src" / "self")
    undecodable = _copy(CORRECT, folder / "inner_name")
    (undecodable / os.fsdecode(b"notes\xff.txt")).write_text("x")
    expected |= {"encrypted": None, "zstd": None, "loop": None, "inner_name": None}
    # Output: control characters in kernel lines; a Makefile that prints 50 MB.
    _copy(CORRECT, folder / "control_chars", _replace(
        '\tpr_info("llist: created %d items\\n", count);',
        '\tpr_info("llist: \\x01\\x07\\x1b[2J\\x7f bell and clear\\n");\n'
        '\tpr_info("llist: created %d items\\n", count);'))
    flood = _copy(CORRECT, folder / "log_flood")
    (flood / "Makefile").write_text(
        "$(shell yes 'flooding the build log' | head -c 50000000 >&2)\nobj-m += llist.o\n")
    expected |= {"control_chars": 10, "log_flood": 10}
    # Resources: a Makefile that takes every process its build may have (only its own build
    # fails; the students after it build as before), and a small archive of 100,000 headers.
    hog = _copy(CORRECT, folder / "process_hog")
    (hog / "Makefile").write_text("$(shell for i in $$(seq 300); do "
                                  "(sleep 120 >/dev/null 2>&1 &); done)\nobj-m += llist.o\n")
    with tarfile.open(folder / "header_bomb.tar.gz", "w:gz") as bomb:
        header = tarfile.TarInfo("llist/x")
        for _ in range(100_000):
            bomb.addfile(header, io.BytesIO(b""))
    expected |= {"process_hog": 0, "header_bomb": None}
    # The kmem ledger switched off while leaking: off and on again, and left off.
    for name, before, after in (
            ("ledger_off_and_on", '\tledger("0");\n', '\tledger("1");\n'),
            ("ledger_left_off", '\tledger("0");\n', ""),
            ("ledger_event_off_and_on", "\tledger_event(false);\n", "\tledger_event(true);\n")):
        # fake_frees prints "freed 6 items" and frees nothing: only the ledger can tell.
        _copy(SUBMISSIONS / "fake_frees", folder / name, _replace(
            "\tfor (i = 0; i < count; i++) {", before + "\tfor (i = 0; i < count; i++) {"))
        source = folder / name / "llist.c"
        text = source.read_text().replace("static LIST_HEAD(birthday_list);",
                                          "static LIST_HEAD(birthday_list);\n" + LEDGER_SWITCH)
        text = text.replace('\tpr_info("llist: created %d items\\n", count);',
                            after + '\tpr_info("llist: created %d items\\n", count);')
        source.write_text(text)
        expected[name] = 4  # builds (2), rejects -1 (2); both ledger tests fail
    return expected


@pytest.fixture(scope="module")
def hostile(harness_session, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    secret_file = work / "grader-secret.txt"
    secret_file.write_text(SECRET_FILE + "\n")
    expected = make_submissions(work / "submissions", secret_file)
    out = work / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "grade", str(work / "submissions"),
         "--spec", str(EXAMPLE / "assignment.yaml"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
        env={**os.environ, "HARNESS_GRADER_SECRET": SECRET_ENV},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "gradebook.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    return proc, out, expected, rows


def _result(out: Path, key: str) -> dict:
    return json.loads((out / "students" / key / "result.json").read_text())


def test_every_hostile_submission_gets_a_row_and_its_expected_score(hostile):
    _, _, expected, rows = hostile
    assert set(rows) == set(expected)
    got = {name: (float(row["score"]) if row["status"] != "rejected" else None)
           for name, row in rows.items()}
    assert got == expected


def test_names_decide_nothing_and_a_shared_name_grades_each_on_its_own_files(hostile):
    _, out, _, rows = hostile
    for shown in NAMES.values():
        assert rows[shown]["status"] == "graded" and float(rows[shown]["score"]) == 10
    assert "2 submissions for dup (dup, dup.zip)" in rows["dup"]["reason"]
    broken = _result(out, rows["dup.zip"]["folder"])
    assert any("error:" in t["message"] for t in broken["tests"])


def test_debug_information_reaches_none_of_the_graders_files(hostile):
    _, out, _, rows = hostile
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET_ENV.encode() not in data, path
            assert SECRET_FILE.encode() not in data, path
    crash = [c for t in _result(out, "dwarf_environ")["tests"] for c in t["crashes"]]
    assert any(c["location"] == "environ:1" and c["source"] is None for c in crash), crash
    for name in ("dwarf_host_file", "dwarf_climb"):
        leak = next(t for t in _result(out, name)["tests"]
                    if t["test"] == "test_frees_every_item_on_unload")
        assert "memory leak in llist_init: 6 object(s), 192 bytes" in leak["message"]
        assert "grader-secret.txt:1" in leak["message"]


def test_unreadable_submissions_are_rejected_with_the_reason(hostile):
    _, out, _, rows = hostile
    assert rows["encrypted"]["reason"] == ("the zip is encrypted (password-protected): submit "
                                           "it without a password")
    assert rows["zstd"]["reason"].startswith("the zip uses compression method 93")
    assert rows["loop"]["reason"] == "a symlink that leads nowhere or in a loop: src/self"
    assert rows["inner_name"]["reason"] == (
        "a file name that is not valid UTF-8 or holds control characters: notes\\xff.txt "
        "(rename the file)")
    assert rows["header_bomb"]["reason"] == "too many files (more than 100)"  # the spec's limit


def test_a_build_that_takes_every_process_fails_only_itself(hostile):
    """Its own build cannot fork; everyone graded after it scores as expected (the first test),
    its processes having died with its build."""
    _, out, _, _ = hostile
    messages = " ".join(t["message"] for t in _result(out, "process_hog")["tests"])
    assert "Cannot fork" in messages or "Resource temporarily unavailable" in messages, \
        messages[-2000:]


def test_outputs_stay_valid_and_bounded(hostile):
    _, out, _, rows = hostile
    ET.parse(out / "junit.xml")  # well-formed whatever the names and kernel lines held
    for path in out.rglob("*.json"):
        json.loads(path.read_bytes().decode("utf-8"))  # strict UTF-8, no lone surrogates
    control = _result(out, "control_chars")
    lines = [line for t in control["tests"] for line in t["kernel_lines"]]
    assert any("llist: \\x01\\x07\\x1b[2J\\x7f bell and clear" in line for line in lines)
    for path in (out / "junit.xml", out / "report.html", out / "students" / "control_chars" /
                 "result.json"):
        assert b"\x01" not in path.read_bytes() and b"\x1b" not in path.read_bytes()
    flood = out / "students" / "log_flood" / "result.json"
    assert flood.stat().st_size < 200_000 and float(rows["log_flood"]["score"]) == 10


def test_switching_the_ledger_off_fails_the_leak_check_saying_so(hostile):
    _, out, _, _ = hostile
    for name, why in (("ledger_off_and_on", "it was switched off for a while"),
                      ("ledger_left_off", "its recording was switched off (tracing_on is 0)"),
                      ("ledger_event_off_and_on", "it was switched off for a while")):
        tests = {t["test"]: t for t in _result(out, name)["tests"]}
        frees = tests["test_frees_every_item_on_unload"]
        assert frees["outcome"] == "failed"
        assert "the kmem ledger's recording was interrupted during the test" in frees["message"]
        assert why in frees["message"], frees["message"][-1500:]
