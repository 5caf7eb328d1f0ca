"""The kernel matrix without VMs: the catalogue's matrices, the grid and its files, cell ids,
the vm_kernel range, the build lane's first error, and small pytest matrix sessions run by
``pytester`` in build-only mode (which boots nothing), also over two xdist workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.boxes import CatalogueError, load_catalogue, parse_catalogue, version_tuple
from harness.build import first_error, parse_diagnostics
from harness.matrix import Cell, Grid, MatrixBox, split_cell_id
from harness.matrixplugin import kernel_skip_reason

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]

BOX = {"source": "local", "user": "vagrant", "package_manager": "apt",
       "headers_package": "linux-headers-{release}", "headers_install": "true",
       "recipe": {"suite": "bookworm", "packages": ["linux-image-amd64"]}}
CATALOGUE = f"""\
default: old
boxes:
  old: {{vagrant_box: t/old, kernel_series: "5.10", {json.dumps(BOX)[1:-1]}}}
  mid: {{vagrant_box: t/mid, kernel_series: "6.1", {json.dumps(BOX)[1:-1]}}}
  new: {{vagrant_box: t/new, kernel_series: "latest", {json.dumps(BOX)[1:-1]}}}
matrices:
  both-ends: [old, new]
"""


def test_the_shipped_catalogue_names_its_kernels_and_matrices():
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    assert [b.name for b in catalogue.matrix("lts")] == ["debian-11", "debian-12", "debian-13"]
    series = {b.name: b.kernel_series for b in catalogue.boxes.values()}
    assert series["debian-11"] == "5.10" and series["debian-sid"] == "latest"
    assert series["debian-12-rt"] == "6.1"
    assert all(series.values()), series


def test_a_matrix_is_names_and_named_sets_each_box_once(tmp_path: Path):
    (tmp_path / "boxes.yaml").write_text(CATALOGUE)
    catalogue = load_catalogue(tmp_path / "boxes.yaml")
    assert [b.name for b in catalogue.matrix("mid, both-ends,old")] == ["mid", "old", "new"]
    with pytest.raises(CatalogueError, match="no box named 'nope'; known boxes: mid, new, old"):
        catalogue.matrix("old,nope")
    with pytest.raises(CatalogueError, match="empty box list"):
        catalogue.matrix(" , ")


@pytest.mark.parametrize(("matrices", "says"), [
    ({"x": ["old", "gone"]}, "matrix 'x': no box named 'gone'"),
    ({"x": []}, "matrix 'x': must be a non-empty list"),
    ({"x": "old"}, "matrix 'x': must be a non-empty list"),
])
def test_a_bad_matrix_in_the_catalogue_is_named(tmp_path: Path, matrices, says):
    import yaml

    data = yaml.safe_load(CATALOGUE)
    data["matrices"] = matrices
    with pytest.raises(CatalogueError, match=says):
        parse_catalogue(data, tmp_path / "boxes.yaml")


def test_kernel_versions_compare_as_tuples_and_latest_is_newest(tmp_path: Path):
    assert version_tuple("6.12.57+deb13-amd64") == (6, 12, 57)
    assert version_tuple("5.10.0-33-amd64") < (6, 4) <= version_tuple("7.2.13+deb14-amd64")
    assert version_tuple("latest") == ()
    (tmp_path / "boxes.yaml").write_text(CATALOGUE)
    boxes = load_catalogue(tmp_path / "boxes.yaml").boxes
    newer = pytest.mark.vm_kernel(min="6.4").mark
    assert kernel_skip_reason(boxes["old"], newer) == "needs kernel >= 6.4; box old has 5.10"
    assert kernel_skip_reason(boxes["new"], newer) is None
    older = pytest.mark.vm_kernel(max="6.1").mark
    assert kernel_skip_reason(boxes["mid"], older) is None  # 6.1 itself is inside
    assert kernel_skip_reason(boxes["new"], older) == "needs kernel <= 6.1; box new has latest"
    with pytest.raises(pytest.UsageError, match="min= and max="):
        kernel_skip_reason(boxes["old"], pytest.mark.vm_kernel("6.4").mark)


@pytest.mark.parametrize(("nodeid", "expected"), [
    ("t.py::test_a[debian-11]", ("t.py::test_a", "debian-11")),
    ("t.py::test_a[x-1-debian-12-k6.12]", ("t.py::test_a[x-1]", "debian-12-k6.12")),
    ("t.py::C::test_a[debian-12]", ("t.py::C::test_a", "debian-12")),
    ("t.py::test_a[debian-12-k6.12]", ("t.py::test_a", "debian-12-k6.12")),
    ("t.py::test_a[other]", None),
    ("t.py::test_a", None),
])
def test_a_cells_id_ends_with_its_box(nodeid, expected):
    assert split_cell_id(nodeid, ["debian-11", "debian-12", "debian-12-k6.12"]) == expected


def _grid() -> Grid:
    grid = Grid(boxes=[MatrixBox("old", None), MatrixBox("new", None)])
    grid.add(Cell("t.py::test_load", "old", "passed", None, "5.10.0-1"))
    grid.add(Cell("t.py::test_load", "new", "build-failed",
                  "m.c:24: error: too many arguments to function 'class_create'", "6.12.1",
                  report="full build log"))
    grid.add(Cell("t.py::test_crash", "old", "failed", "<script>alert(1)</script>\x1b[31m",
                  "5.10.0-1", report="the oops"))
    grid.add(Cell("t.py::test_crash", "new", "skipped", "needs kernel <= 6.1"))
    return grid


def test_the_grid_as_json_terminal_and_html(tmp_path: Path):
    grid = _grid()
    assert grid.failed
    data = grid.to_json()
    assert data["boxes"] == [{"name": "old", "kernel": "5.10.0-1"},
                             {"name": "new", "kernel": "6.12.1"}]
    assert {(r["test"], r["box"]): (r["outcome"], r["title"]) for r in data["results"]} == {
        ("t.py::test_load", "old"): ("passed", None),
        ("t.py::test_load", "new"): ("build-failed",
                                     "m.c:24: error: too many arguments to function "
                                     "'class_create'"),
        ("t.py::test_crash", "old"): ("failed", "<script>alert(1)</script>\\x1b[31m"),
        ("t.py::test_crash", "new"): ("skipped", "needs kernel <= 6.1")}
    lines = grid.terminal()
    assert lines[0] == "in t.py" and lines[1].split() == ["test", "old", "new"]
    assert lines[3].split()[:3] == ["test_load", "ok", "BUILD:"]
    assert lines[-1] == "1 passed, 1 failed, 1 skipped, 1 build-failed (2 tests x 2 boxes)"
    written = grid.write(tmp_path / "out")
    page = written["html"].read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert json.loads(written["json"].read_text()) == data
    linked = sorted(p.read_text() for p in (tmp_path / "out" / "cells").iterdir())
    assert linked == ["full build log", "the oops"]
    assert page.count('<a href="cells/') == 2
    with pytest.raises(ValueError, match="outcome 'odd'"):
        grid.add(Cell("t", "old", "odd"))


def test_the_first_error_is_the_modules_own_line_also_in_kbuild_relative_paths(tmp_path: Path):
    module = tmp_path / "classdev"
    module.mkdir()
    (module / "classdev.c").write_text("int x;\n")
    # 7.2's kbuild compiles from the module's folder and names its files relative to it
    log = ("/usr/src/linux-headers-7.2-common/include/linux/init.h:174:22: error: passing "
           "argument 1 of 'class_create' from incompatible pointer type\n"
           "classdev.c:24:15: error: too many arguments to function 'class_create'; "
           "expected 1, have 2\n")
    found = parse_diagnostics(log, {"/tmp/harness-lane/classdev": str(module)})
    first = first_error(found, module)
    assert first is not None and first.line == 24 and Path(first.file) == module / "classdev.c"
    header_only = parse_diagnostics(log.splitlines()[0], {"/x": str(module)})
    assert first_error(header_only, module).file.endswith("init.h")


def test_the_build_lane_says_what_a_box_lacks(tmp_path: Path, monkeypatch):
    from harness.buildlane import build_across

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    results = build_across(ROOT / "modules" / "hello",
                           [catalogue.get("debian-11"), catalogue.get("fedora/31-cloud-base")],
                           tmp_path / "work")
    assert [r.outcome for r in results] == ["error", "error"]
    assert "harness box build debian-11 --rootfs-only" in results[0].log
    assert "Vagrant Cloud" in results[1].log


# -- pytest matrix sessions, build-only (nothing boots) --------------------------------------
TESTS = """
import json, os
import pytest

pytestmark = pytest.mark.vm

def _note(box):
    from harness.matrixplugin import one_worker_per_box
    shared = one_worker_per_box(pytest.harness_config)
    with open("ran.jsonl", "a") as out:
        out.write(json.dumps([box, os.environ.get("PYTEST_XDIST_WORKER"), shared]) + "\\n")

@pytest.fixture(autouse=True)
def _config(request):
    pytest.harness_config = request.config

@pytest.mark.parametrize("n", [1, 2])
def test_each(vm_matrix_box, n):
    _note(vm_matrix_box)

@pytest.mark.vm_kernel(min="6.4")
def test_new_only(vm_matrix_box):
    _note(vm_matrix_box)

@pytest.mark.vm_box("mid")
def test_mid_only(vm_matrix_box):
    _note(vm_matrix_box)

def test_fails(vm_matrix_box):
    assert vm_matrix_box != "new", "breaks on the newest"

def test_needs_the_guest(guest):
    guest.run("true")
"""


def _matrix_suite(pytester: pytest.Pytester) -> None:
    (pytester.path / "boxes.yaml").write_text(CATALOGUE)
    pytester.makepyfile(test_suite=TESTS)


def test_a_matrix_run_has_a_cell_per_box_grouped_by_box_with_skips_and_the_grid(
        pytester: pytest.Pytester):
    _matrix_suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-box", "old,new",
                                "--vm-build-only", "-v", "--vm-matrix-report=grid")
    outcomes = result.parseoutcomes()
    outcomes.pop("warnings", None)
    assert outcomes == {"passed": 6, "failed": 1, "skipped": 5}, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_each[[]1-old[]] PASSED*", "*test_new_only[[]old[]] SKIPPED*",
        "*test_mid_only[[]old[]] SKIPPED*", "*test_fails[[]old[]] PASSED*",
        "*test_needs_the_guest[[]old[]] SKIPPED*", "*test_each[[]2-old[]] PASSED*",
        "*test_each[[]1-new[]] PASSED*", "*test_fails[[]new[]] FAILED*",
        "*harness kernel matrix*",
    ])
    ran = [json.loads(line)[0] for line in (pytester.path / "ran.jsonl").read_text().splitlines()]
    # all of one box, then the other (pytest alone went back to "old" for test_each[2])
    assert ran == ["old", "old", "new", "new", "new"]
    grid = json.loads((pytester.path / "grid" / "matrix.json").read_text())
    cells = {(r["test"], r["box"]): (r["outcome"], r["title"]) for r in grid["results"]}
    assert cells["test_suite.py::test_fails", "new"] == (
        "failed", "AssertionError: breaks on the newest")
    assert cells["test_suite.py::test_each[1]", "old"] == ("passed", None)
    assert cells["test_suite.py::test_new_only", "old"] == (
        "skipped", "needs kernel >= 6.4; box old has 5.10")
    assert cells["test_suite.py::test_mid_only", "new"] == (
        "skipped", "runs on box mid only (vm_box marker), which is not in this run's matrix")
    assert cells["test_suite.py::test_needs_the_guest", "old"] == (
        "skipped", "build-only run: guest.run needs a VM")
    assert [b["name"] for b in grid["boxes"]] == ["old", "new"]
    assert result.ret == 1


def test_a_named_matrix_and_the_mistakes_a_user_can_make(pytester: pytest.Pytester):
    _matrix_suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-matrix", "both-ends",
                                "--vm-build-only", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_each[[]1-old[]]", "*test_fails[[]new[]]"])
    for args, says in ((["--vm-matrix", "nope"], "*has no matrix of that name; its matrices: "
                        "both-ends*"),
                       (["--vm-box", "old,gone"], "*no box named 'gone'; known boxes: mid, new, "
                        "old*"),
                       (["--vm-box", "gone"], "*no box named 'gone'*"),
                       (["--vm-box", "old,new", "--vm-matrix", "both-ends"], "*not both*")):
        result = pytester.runpytest("-p", "no:cacheprovider", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([says])


def test_with_xdist_each_box_runs_on_one_worker(pytester: pytest.Pytester):
    pytest.importorskip("xdist")
    _matrix_suite(pytester)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vm-box", "old,mid,new",
                                           "--vm-build-only", "-n", "2",
                                           "--vm-matrix-report=grid")
    ran = [json.loads(line) for line in (pytester.path / "ran.jsonl").read_text().splitlines()]
    workers = {box: {w for b, w, _ in ran if b == box} for box, _, _ in ran}
    assert all(shared for _, _, shared in ran)  # so a box's VM is one, whichever worker
    assert all(len(w) == 1 for w in workers.values()), workers
    assert set(workers) == {"old", "mid", "new"}
    assert len(set().union(*workers.values())) == 2  # both workers had a box
    grid = json.loads((pytester.path / "grid" / "matrix.json").read_text())
    assert len(grid["results"]) == 6 * 3, result.stdout.str()
    assert result.ret == 1  # test_fails[new]
