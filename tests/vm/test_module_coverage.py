"""--vm-coverage in a real guest: modules/llist's own vm tests (tests/vm/test_modules.py) on the
debug box, whose kernel has gcov, run by an inner pytest. The terminal line, coverage.xml and
the HTML page show the lines reached and the one path no test reaches (init failing half-way);
the lines one test alone reached are named; and the same tests, with two failing on purpose
(tests/scenarios/scenario_coverage.py), get the same verdicts without coverage."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness.boxes import load_catalogue
from harness.vm import VM, VMSettings

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
DEBUG = "debian-12-debug"
# Where the plugin keeps the debug box's VM for the vm_box marker: the inner runs share it.
DEBUG_VM_PROJECT = ROOT / ".harness" / "boxes" / DEBUG
LLIST = ROOT / "modules" / "llist" / "llist.c"
TESTS = ["tests/vm/test_modules.py::test_llist_builds_prints_and_frees_n_items",
         "tests/vm/test_modules.py::test_llist_count_parameter",
         "tests/vm/test_modules.py::test_llist_rejects_a_negative_count_with_the_kernels_reason",
         "tests/scenarios/scenario_coverage.py"]
ALONE = "tests/vm/test_modules.py::test_llist_rejects_a_negative_count_with_the_kernels_reason"


def _inner(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    box = load_catalogue(project_dir=ROOT).get(DEBUG)
    running = VM(VMSettings(box=box), project_dir=DEBUG_VM_PROJECT).is_running()
    return subprocess.run(
        [sys.executable, "-m", "pytest", *TESTS, "-p", "no:cacheprovider",
         f"--vm-project={DEBUG_VM_PROJECT}", f"--vm-box={DEBUG}",
         # Someone's running VM (this run's own debug-box session) is used and left running.
         *(["--vm-reuse"] if running else []),
         f"--junitxml={out / 'junit.xml'}", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=2400, check=False)


def _verdicts(junit: Path) -> dict[str, str]:
    cases = ET.parse(junit).getroot().iter("testcase")
    return {f"{c.get('classname')}::{c.get('name')}":
            next((child.tag for child in c if child.tag in ("failure", "error", "skipped")),
                 "passed") for c in cases}


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(LLIST.read_text().splitlines(), start=1)
                if line.strip() == text)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    found = {}
    for name, extra in (("with", ["--vm-coverage"]), ("without", [])):
        out = tmp_path_factory.mktemp(f"coverage-{name}")
        found[name] = _inner(out, *extra, f"--vm-coverage-dir={out / 'coverage'}"), out
    return found


def test_the_terminal_and_coverage_xml_show_reached_and_missed_lines(runs):
    proc, out = runs["with"]
    assert "2 failed, 3 passed" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-2000:]
    line = re.search(r"harness: coverage llist\.c (\d+)/(\d+) lines, (\d+) % "
                     r"\(modules/llist/llist\.c\)", proc.stdout)
    assert line, proc.stdout[-3000:]
    covered, total = int(line[1]), int(line[2])
    assert 0 < covered < total
    root = ET.parse(out / "coverage" / "coverage.xml").getroot()
    llist = next(c for c in root.iter("class") if c.get("filename") == "modules/llist/llist.c")
    hits = {int(x.get("number")): int(x.get("hits")) for x in llist.iter("line")}
    assert (sum(1 for h in hits.values() if h), len(hits)) == (covered, total)
    # 5 + 5 + 12 items over the three loads that build a list; init ran four times.
    assert hits[_line_of("list_add_tail(&b->list, &birthday_list);")] == 22
    assert hits[_line_of("return -EINVAL;")] == 1
    assert hits[_line_of("return -ENOMEM;")] == 0  # kmalloc never failed: never reached
    assert hits[_line_of("llist_free_all();")] == 0


def test_the_html_page_marks_the_missed_line_and_per_test_lines_are_named(runs):
    _, out = runs["with"]
    page = next((out / "coverage").glob("*-llist.c.html")).read_text()
    missed = re.search(r'<tr class="missed"[^>]*><td>(\d+)</td><td>0</td>'
                       r"<td><pre>\s*llist_free_all\(\);</pre>", page)
    assert missed and int(missed[1]) == _line_of("llist_free_all();")
    assert re.search(r'<tr class="hit" title="[^"]*test_llist_count_parameter[^"]*">'
                     r"<td>\d+</td><td>\d+</td><td><pre>\s*list_add_tail", page)
    alone = json.loads((out / "coverage" / "per-test.json").read_text())
    assert alone[ALONE] == {"modules/llist/llist.c": [
        _line_of('pr_err("llist: count must be between 0 and 10000, got %d\\n", count);'),
        _line_of("return -EINVAL;")]}
    index = (out / "coverage" / "index.html").read_text()
    assert "modules/llist/llist.c" in index and "hello-oops" in index


def test_coverage_changes_no_verdict(runs):
    with_coverage, without = (_verdicts(runs[name][1] / "junit.xml")
                              for name in ("with", "without"))
    assert with_coverage == without
    assert sorted(with_coverage.values()) == ["failure", "failure", "passed", "passed",
                                              "passed"]
    assert "harness: coverage" not in runs["without"][0].stdout
    assert not (runs["without"][1] / "coverage").exists()


def test_grading_with_coverage_shows_each_student_their_own_lines(tmp_path):
    """`coverage: true` in a spec whose kernel is the debug box: each student's coverage of
    their own llist.c by the teacher's tests, in result.json and report.html."""
    from harness.grade.runner import grade

    example = ROOT / "examples" / "llist-assignment"
    spec = yaml.safe_load((example / "assignment.yaml").read_text())
    spec.update(coverage=True, kernel={"box": DEBUG}, tests=str(example / "test_llist.py"))
    spec_path = tmp_path / "assignment.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for name in ("correct", "wrong_output"):
        (submissions / name).symlink_to(example / "submissions" / name)
    with open(tmp_path / "grade.log", "w") as log:
        results = {r.student: r for r in grade(submissions, spec_path, tmp_path / "out",
                                               log=log, vm_project=DEBUG_VM_PROJECT)}
    assert set(results) == {"correct", "wrong_output"}, (tmp_path / "grade.log").read_text()
    for result in results.values():
        (entry,) = result.coverage
        assert entry["source"] == "llist.c" and 0 < entry["covered"] <= entry["total"], entry
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("coverage of llist.c: ") == 2
    saved = json.loads((tmp_path / "out" / "students" / "correct" / "result.json").read_text())
    assert saved["coverage"] == results["correct"].coverage


def test_a_box_whose_kernel_cannot_count_says_so(harness_session, tmp_path):
    """The stock box's kernel has no gcov: the tests run as usual and the run says why
    nothing was counted (this run's own VM, running, is used and left running)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/vm/test_modules.py::test_llist_count_parameter",
         "-p", "no:cacheprovider", "--vm-reuse", "--vm-coverage",
         f"--vm-coverage-dir={tmp_path / 'coverage'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    assert "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    said = re.search(r"harness: coverage: box debian-12: tests on it are not counted: its "
                     r"kernel \(\S+\) has no gcov support", proc.stdout)
    assert said, proc.stdout[-3000:]
    assert "harness: coverage llist.c" not in proc.stdout
