"""One module, many kernels, for real: the build-only lane compiles classdev written for 5.10
against the kept root filesystems of 5.10, 6.1 and 6.12 (it must fail on 6.12 only, with the
compiler's line), and a pytest matrix run (tests/scenarios/scenario_matrix.py) boots a 5.10
guest beside the run's own 6.1 one and loads the fixed classdev on both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.boxbuild import box_kernel_release
from harness.boxes import load_catalogue
from harness.paths import vm_project_dir
from harness.session import make_vm
from harness.vmoptions import VMOptions

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
LANE_BOXES = ("debian-11", "debian-12", "debian-12-k6.12")  # 5.10, 6.1, 6.12
MATRIX_BOXES = ("debian-11", "debian-12")  # debian-12: the run's own VM, shared
OTHER_BOX = "debian-11"
CLASS_CREATE = "modules/classdev-5.10/classdev.c:24: error: too many arguments to function " \
               "'class_create'"


def _lane(module: str, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "build", module, "--box", ",".join(LANE_BOXES),
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    return proc, json.loads((out / "matrix.json").read_text())


def test_the_build_lane_fails_the_5_10_module_exactly_from_6_4_on(tmp_path):
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    for name in LANE_BOXES:
        assert box_kernel_release(catalogue.get(name)), \
            f"{name}'s root filesystem is not built (scripts/test.sh builds it)"
    proc, grid = _lane("modules/classdev-5.10", tmp_path / "broken")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cells = {r["box"]: r for r in grid["results"]}
    assert {box: cell["outcome"] for box, cell in cells.items()} == {
        "debian-11": "passed", "debian-12": "passed", "debian-12-k6.12": "build-failed"}
    assert cells["debian-12-k6.12"]["title"] == CLASS_CREATE
    assert cells["debian-12-k6.12"]["kernel"].startswith("6.12.")
    assert cells["debian-11"]["kernel"].startswith("5.10.")
    row = next(line for line in proc.stdout.splitlines() if line.startswith("debian-12-k6.12"))
    assert "build-failed" in row and CLASS_CREATE in row
    fixed, grid = _lane("modules/classdev", tmp_path / "fixed")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert [r["outcome"] for r in grid["results"]] == ["passed"] * len(LANE_BOXES)
    assert "3 of 3 boxes built classdev" in fixed.stdout


@pytest.fixture(scope="module")
def matrix_run(harness_session, request, tmp_path_factory):
    """The scenario as a matrix run of two boxes: the run's own VM (shared, --vm-reuse) and a
    5.10 guest of its own, which ends as this run's VM ends (saved, or destroyed in CI)."""
    out = tmp_path_factory.mktemp("matrix")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/scenarios/scenario_matrix.py", "--vm-reuse",
         "-p", "no:cacheprovider", "--vm-box", ",".join(MATRIX_BOXES), "-v",
         f"--vm-matrix-report={out}", f"--junitxml={out / 'junit.xml'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    yield proc, out
    other = make_vm(VMOptions(box=OTHER_BOX), vm_project_dir(ROOT, None, OTHER_BOX),
                    catalogue_dir=ROOT)
    if request.config.getoption("--vm-end") == "destroy":
        other.destroy()
    else:
        other.power_off()


def test_a_matrix_run_loads_the_fixed_module_on_every_kernel(matrix_run):
    proc, out = matrix_run
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    grid = json.loads((out / "matrix.json").read_text())
    kernels = {b["name"]: b["kernel"] for b in grid["boxes"]}
    assert kernels["debian-11"].startswith("5.10.") and kernels["debian-12"].startswith("6.1.")
    cells = {(r["test"].rpartition("::")[2], r["box"]): r["outcome"] for r in grid["results"]}
    assert cells == {
        ("test_classdev_registers_its_device", "debian-11"): "passed",
        ("test_classdev_registers_its_device", "debian-12"): "passed",
        ("test_classdev_written_for_5_10", "debian-11"): "passed",
        ("test_classdev_written_for_5_10", "debian-12"): "passed",
        ("test_class_create_takes_only_a_name", "debian-11"): "skipped",
        ("test_class_create_takes_only_a_name", "debian-12"): "skipped",
    }
    assert "test_classdev_registers_its_device[debian-11] PASSED" in proc.stdout
    assert "harness kernel matrix" in proc.stdout
    page = (out / "matrix.html").read_text()
    assert page.count("<td class=\"passed\"") == 4
    junit = (out / "junit.xml").read_text()
    assert '<property name="box" value="debian-11"' in junit
    assert '<property name="kernel" value="5.10.' in junit
