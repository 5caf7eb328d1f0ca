"""The build-only lane: one module compiled against many boxes' kernels without booting any.

Each box's kept root filesystem (``harness box build NAME [--rootfs-only]``) holds its kernel's
headers and its own gcc, so kbuild runs there on the host (the same sandbox as every host build,
:class:`harness.hostbuild.RootfsBuilder`) at native speed: a module's "does it still build on
6.12, on sid" answered in seconds. The result of each box is a cell of a
:class:`harness.matrix.Grid` (passed or build-failed with the compiler's first error as
``file:line: message``), so ``harness build`` and a pytest matrix draw the same grid.
"""

from __future__ import annotations

import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.boxbuild import box_rootfs, rootfs_kernel_release
from harness.boxes import Box
from harness.build import Diagnostic, first_error, make_command, parse_diagnostics
from harness.hostbuild import REJECTED, TIMED_OUT, RootfsBuilder
from harness.matrix import Cell, Grid, MatrixBox

# Where the module sits inside the sandbox: the same kind of path as a guest's build folder.
LANE_DIR = "/tmp/harness-lane"
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class LaneResult:
    box: Box
    module_dir: Path
    kernel: str | None
    outcome: str  # passed | build-failed | error (the box cannot build here)
    seconds: float
    log: str
    diagnostics: list[Diagnostic]

    @property
    def first_diagnostic(self) -> str | None:
        """The first error (:func:`harness.build.first_error`), else the log's last line:
        what the table shows."""
        first = first_error(self.diagnostics, self.module_dir)
        if first is not None:
            return str(first)
        if self.outcome == "passed":
            return None
        tail = [line for line in self.log.strip().splitlines() if line.strip()]
        return tail[-1].strip() if tail else None


def build_on(box: Box, module_dir: Path, work_root: Path,
             timeout: float = DEFAULT_TIMEOUT_S) -> LaneResult:
    """Compile ``module_dir`` against ``box``'s kernel in its root filesystem on the host."""
    started = time.monotonic()
    rootfs = box_rootfs(box)
    if rootfs is None:
        return LaneResult(box, module_dir, None, "error", 0.0,
                          f"box {box.name} comes from Vagrant Cloud: it has no root filesystem "
                          "on this host to build in; the build-only lane needs a local box", [])
    builder = RootfsBuilder(rootfs, work_root / box.name.replace("/", "_"))
    why_not = builder.unavailable_reason()
    if why_not:
        return LaneResult(box, module_dir, None, "error", 0.0,
                          f"{why_not}: run `harness box build {box.name} --rootfs-only`", [])
    release = rootfs_kernel_release(rootfs)
    if release is None:
        return LaneResult(box, module_dir, None, "error", 0.0,
                          f"box {box.name}'s root filesystem has no kernel headers "
                          f"(no /lib/modules/*/build in {rootfs}): is linux-headers in its "
                          "recipe?", [])
    guest_dir = posixpath.join(LANE_DIR, module_dir.name)
    outcome = builder.compile(module_dir, guest_dir, make_command(guest_dir, release=release),
                              timeout, limit_name="the build-only lane's limit")
    diagnostics = parse_diagnostics(outcome.log, {guest_dir: str(module_dir)})
    ok = outcome.exit_status == 0 and bool(outcome.ko_files)
    log = outcome.log
    if outcome.exit_status == 0 and not outcome.ko_files:
        log += "\nmake succeeded but built no .ko file (is obj-m set in the Makefile?)\n"
    elif outcome.exit_status in (TIMED_OUT, REJECTED):
        diagnostics = []
    return LaneResult(box, module_dir, release, "passed" if ok else "build-failed",
                      round(time.monotonic() - started, 2), log, diagnostics)


def build_across(module_dir: Path, boxes: list[Box], work_root: Path, jobs: int = 2,
                 timeout: float = DEFAULT_TIMEOUT_S) -> list[LaneResult]:
    """``build_on`` for every box, ``jobs`` at a time, results in the boxes' order."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda box: build_on(box, module_dir, work_root, timeout), boxes))


def lane_grid(module_dir: Path, results: list[LaneResult]) -> Grid:
    """The results as a grid: one row (the module's build), a column per box."""
    grid = Grid(boxes=[MatrixBox(r.box.name, r.kernel) for r in results], build_only=True)
    test = f"build {module_dir.name}"
    for result in results:
        grid.add(Cell(test=test, box=result.box.name, outcome=result.outcome,
                      title=result.first_diagnostic, kernel=result.kernel,
                      report=f"box {result.box.name}, kernel {result.kernel or '-'}, "
                      f"{result.seconds:.1f} s\n\n{result.log}"))
    return grid
