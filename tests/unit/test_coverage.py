"""Line coverage from gcov counters: the guest read's format, line counts with the box's real
gcov (a user-space program compiled with --coverage in the box's root filesystem stands in for
a module; no VM), per-test sums, and the Cobertura and HTML outputs."""

from __future__ import annotations

import base64
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.coverage import (
    GCOV_ARGS,
    GCOV_ROOT,
    Counters,
    CoverageCollector,
    CoverageReport,
    line_counts,
    parse_read,
    read_script,
)
from harness.hostbuild import RootfsBuilder

BUILD_DIR = "/tmp/work/mod"  # the compile-time folder, like a module's guest folder
PROGRAM_C = """#include <stdio.h>
int main(int argc, char **argv)
{
	if (argc > 2)
		puts("two arguments");
	for (int i = 0; i < 3; i++)
		puts("x");
	return 0;
}
"""


def test_the_guest_read_gives_each_gcda_by_its_build_path():
    printed = (f"=== {GCOV_ROOT}/tmp/harness/llist-1/llist.gcda\n"
               f"{base64.b64encode(b'adcg').decode()}\n"
               f"=== {GCOV_ROOT}/tmp/harness/llist-1/sub/b.gcda\n\n")
    assert parse_read(printed) == {"/tmp/harness/llist-1/llist.gcda": b"adcg",
                                   "/tmp/harness/llist-1/sub/b.gcda": b""}
    script = read_script(["/tmp/harness/a b", "/tmp/harness/a b"])
    assert script.count(f"'{GCOV_ROOT}/tmp/harness/a b'") == 1  # quoted, once


def test_the_read_script_prints_what_parse_read_takes(tmp_path):
    """The script itself, run by sh (dash in the guest) on a stand-in folder."""
    folder = tmp_path / "tmp" / "harness" / "m"
    folder.mkdir(parents=True)
    (folder / "m.gcda").write_bytes(b"\x00\x01counters")
    script = read_script(["/tmp/harness/m"]).replace(GCOV_ROOT, str(tmp_path))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert parse_read(done.stdout.replace(str(tmp_path), GCOV_ROOT)) == {
        "/tmp/harness/m/m.gcda": b"\x00\x01counters"}


@pytest.fixture
def sandbox(box_sandbox: RootfsBuilder) -> RootfsBuilder:
    return box_sandbox


def counted_program(sandbox: RootfsBuilder, tmp_path: Path, *runs: list[str]) -> list[Counters]:
    """The program compiled with --coverage at BUILD_DIR, one Counters per run of it (the
    counters zeroed between runs, as the guest's reset does between tests)."""
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "prog.c").write_text(PROGRAM_C)
    work = tmp_path / "work"
    (work / "mod").mkdir(parents=True)
    (work / "mod" / "prog.c").write_text(PROGRAM_C)
    sandbox.run_tool(work, ["sh", "-c", f"gcc --coverage -c -o {BUILD_DIR}/prog.o "
                            f"{BUILD_DIR}/prog.c && gcc --coverage -o {BUILD_DIR}/prog "
                            f"{BUILD_DIR}/prog.o"])
    notes = {"prog.gcno": work / "mod" / "prog.gcno"}
    found = []
    for index, args in enumerate(runs):
        (work / "mod" / "prog.gcda").unlink(missing_ok=True)
        sandbox.run_tool(work, [f"{BUILD_DIR}/prog", *args])
        found.append(Counters(f"test_{index}", source_dir, BUILD_DIR,
                              {"prog.gcda": (work / "mod" / "prog.gcda").read_bytes()}, notes))
    return found


def gcov_of(sandbox: RootfsBuilder):
    return lambda folder, names: sandbox.run_tool(folder, ["gcov", *GCOV_ARGS, *names])


def test_real_gcov_counts_lines_per_test_and_finds_the_line_only_one_test_reached(
        sandbox, tmp_path):
    plain, with_args = counted_program(sandbox, tmp_path, [], ["a", "b"])
    gcov = gcov_of(sandbox)
    source = plain.source_dir / "prog.c"
    counts = line_counts(plain, gcov)
    assert list(counts) == [source]
    assert counts[source][5] == 0 and counts[source][7] == 3  # puts("two..") / puts("x")
    report = CoverageReport()
    report.add(plain.test, counts)
    report.add(with_args.test, line_counts(with_args, gcov))
    assert report.hits[source][7] == 6 and report.hits[source][5] == 1
    assert report.only_reached_by("test_1") == {source: [5]}
    assert report.only_reached_by("test_0") == {}
    (summary,) = report.files()
    assert summary.covered == summary.total == 6
    assert summary.line(tmp_path) == "prog.c 6/6 lines, 100 % (src/prog.c)"


def test_an_object_never_loaded_counts_zero_and_bad_counters_are_said(sandbox, tmp_path):
    (counted,) = counted_program(sandbox, tmp_path, [])
    never = Counters("test_never", counted.source_dir, BUILD_DIR, {}, counted.gcno)
    source = counted.source_dir / "prog.c"
    assert set(line_counts(never, gcov_of(sandbox))[source].values()) == {0}
    collector = CoverageCollector()
    collector.add(Counters("test_bad", counted.source_dir, BUILD_DIR,
                           {"prog.gcda": b"not counters"}, counted.gcno), gcov_of(sandbox))
    report = collector.report()
    # gcov reads a garbled data file as no data at all; either way nothing is made up.
    assert report.hits.get(source, {}).get(7, 0) == 0


def test_cobertura_and_html_show_hit_and_missed_lines(tmp_path):
    source = tmp_path / "modules" / "llist" / "llist.c"
    source.parent.mkdir(parents=True)
    source.write_text("int a;\nint f(void)\n{\n\treturn 1 < 2 ? a : 0;\n}\n<b>\n")
    report = CoverageReport()
    report.add("test_x.py::test_load", {source: {2: 1, 4: 3, 6: 0}})
    report.problems.append("box debian-12: tests on it are not counted")
    written = report.write(tmp_path / "out", tmp_path)
    tree = ET.parse(written["cobertura"]).getroot()
    assert tree.get("lines-covered") == "2" and tree.get("lines-valid") == "3"
    (cls,) = tree.iter("class")
    assert cls.get("filename") == "modules/llist/llist.c"
    assert [(line.get("number"), line.get("hits")) for line in cls.iter("line")] == [
        ("2", "1"), ("4", "3"), ("6", "0")]
    index = written["html"].read_text()
    assert "modules/llist/llist.c" in index and "2/3" in index and "tests on it are not" in index
    page = next((tmp_path / "out").glob("*-llist.c.html")).read_text()
    assert '<tr class="missed" title=""><td>6</td><td>0</td><td><pre>&lt;b&gt;</pre>' in page
    assert '<tr class="hit" title="test_x.py::test_load"><td>4</td><td>3</td>' in page


def test_a_source_named_outside_the_module_folder_is_never_read(tmp_path):
    """A Makefile can name an object ../../x.o; its source path from gcov then points at a
    host file, which must not reach the report."""
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "ok.c").write_text("int x;\n")
    secret = tmp_path / "secret.c"
    secret.write_text("root:x:0:0\n")
    notes = tmp_path / "ok.gcno"
    notes.write_bytes(b"notes")
    output = json.dumps({"files": [
        {"file": "/tmp/harness/s-1/../secret.c", "lines": [{"line_number": 1, "count": 1}]},
        {"file": "/tmp/harness/s-1/ok.c", "lines": [{"line_number": 1, "count": 2}]}]})
    counters = Counters("t", folder, "/tmp/harness/s-1", {}, {"ok.gcno": notes})
    assert line_counts(counters, lambda _folder, _names: output) == {folder / "ok.c": {1: 2}}
