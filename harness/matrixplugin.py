"""The kernel matrix in pytest: every vm test once per box, and the grid at the end.

``--vm-box a,b,c`` (or ``--vm-matrix NAME`` from boxes.yaml's ``matrices``) parametrizes every
test marked ``vm`` with the box, as the last part of its id (``test_x[debian-11]``), at session
scope: pytest then runs one box's tests together on that box's VM (saved at the end as
today), and with xdist each box goes to one worker as a whole (:class:`BoxScheduling`). A test
limits itself with ``@pytest.mark.vm_kernel(min="6.4")`` (checked against the box's
``kernel_series`` before any VM starts) or ``@pytest.mark.vm_box(NAME)``; the other cells are
skipped with the reason. After the run the grid (:mod:`harness.matrix`) is printed and written
to ``--vm-matrix-report``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.boxbuild import box_kernel_release
from harness.boxes import Box, Catalogue, version_tuple
from harness.build import BuildResult, ModuleBuildError
from harness.buildlane import LANE_DIR, build_on
from harness.matrix import Cell, Grid, MatrixBox, split_cell_id

MATRIX_ARG = "vm_matrix_box"
OUTCOME_PROPERTY = "harness_outcome"  # set to build-failed when the module did not build
ONE_WORKER_PER_BOX = "harness_one_worker_per_box"  # xdist workerinput key
TITLE_PROPERTY = "harness_title"  # then the compiler's first error, as file:line: message


def one_worker_per_box(config: pytest.Config) -> bool:
    """In an xdist worker of a matrix run: each box runs on one worker only
    (:class:`BoxScheduling`)."""
    return bool(getattr(config, "workerinput", {}).get(ONE_WORKER_PER_BOX, False))


def kernel_skip_reason(box: Box, marker: pytest.Mark | None) -> str | None:
    """Why ``box`` is outside a test's ``vm_kernel(min=, max=)`` range (None: inside it)."""
    if marker is None:
        return None
    unknown = set(marker.kwargs) - {"min", "max"}
    if unknown or marker.args:
        raise pytest.UsageError(f"vm_kernel takes min= and max= (kernel versions like "
                                f"\"6.4\"), not {', '.join(sorted(unknown)) or marker.args}")
    series = box.series_version
    low, high = marker.kwargs.get("min"), marker.kwargs.get("max")
    shown = box.kernel_series or "unknown"
    if low is not None and series < version_tuple(str(low)):
        return f"needs kernel >= {low}; box {box.name} has {shown}"
    if high is not None and series[:len(version_tuple(str(high)))] > version_tuple(str(high)):
        return f"needs kernel <= {high}; box {box.name} has {shown}"
    return None


class MatrixRun:
    """The matrix's pytest side, registered when a run has more than one box."""

    def __init__(self, config: pytest.Config, catalogue: Catalogue, boxes: list[Box]):
        self.config = config
        self.catalogue = catalogue
        self.boxes = boxes
        self.names = [b.name for b in boxes]
        # A build-only run's kernels are its boxes' root filesystems'; a VM's is what it runs.
        built = config.getoption("--vm-build-only")
        self.grid = Grid(boxes=[MatrixBox(b.name, box_kernel_release(b) if built else None)
                                for b in boxes], build_only=built)

    # -- collection -----------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)  # last: the box is the last part of the id
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        definition = metafunc.definition
        if MATRIX_ARG not in metafunc.fixturenames or definition.get_closest_marker("vm") is None:
            return
        wanted = definition.get_closest_marker("vm_box")
        only = self.catalogue.get(str(wanted.args[0])).name if wanted and wanted.args else None
        params = []
        for box in self.boxes:
            reason = kernel_skip_reason(box, definition.get_closest_marker("vm_kernel"))
            if only is not None and box.name != only:
                reason = f"runs on box {only} only (vm_box marker)" + (
                    "" if only in self.names else ", which is not in this run's matrix")
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(box.name, id=box.name, marks=marks))
        metafunc.parametrize(MATRIX_ARG, params, scope="session")

    @pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixtures
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """All of one box's tests together, boxes in the matrix's order: pytest's grouping by
        session-scoped parameters does not hold when a test has parameters of its own, and
        each switch back to a box would stop and resume its VM again."""
        order = {name: index for index, name in enumerate(self.names)}

        def box_index(item: pytest.Item) -> int:
            callspec = getattr(item, "callspec", None)
            box = callspec.params.get(MATRIX_ARG) if callspec is not None else None
            return order.get(box, -1)  # tests outside the matrix first

        items.sort(key=box_index)

    # -- results --------------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.outcome == "rerun":  # harness.nightly's re-runs: the last attempt counts
            return
        split = split_cell_id(report.nodeid, self.names)
        if split is None:
            return
        test, box = split
        cell = self.grid.cell(test, box)
        properties = dict(report.user_properties)
        kernel = properties.get("kernel") or (cell.kernel if cell else None)
        if report.when == "teardown":
            if cell is not None:
                cell.kernel = kernel
                self.grid.note_kernel(box, kernel)  # known once a test ran on the box
                if report.failed and cell.outcome in ("passed", "skipped"):
                    self.grid.add(Cell(test, box, "error", _first_line(report), kernel,
                                       _report_text(report)))
            return
        if report.when == "setup" and report.passed:
            return
        if report.skipped:
            outcome, title = "skipped", _skip_reason(report)
        elif report.passed:
            outcome, title = "passed", None
        elif report.when == "setup":
            outcome, title = "error", _first_line(report)
        else:
            outcome = properties.get(OUTCOME_PROPERTY, "failed")
            title = (properties.get("crash_title") or properties.get(TITLE_PROPERTY)
                     or _first_line(report))
        self.grid.add(Cell(test, box, outcome, title, kernel,
                           "" if outcome == "passed" else _report_text(report)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes
            return
        self.grid.boxes = [MatrixBox(b.name, b.kernel) for b in self.grid.boxes]
        folder = Path(self.config.invocation_params.dir) / self.config.getoption(
            "--vm-matrix-report")
        self.written = self.grid.write(folder)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.grid.cells:
            return
        terminalreporter.section("harness kernel matrix")
        for line in self.grid.terminal():
            terminalreporter.write_line(line)
        written = getattr(self, "written", None)
        if written:
            terminalreporter.write_line(f"grid: {written['html']}, {written['json']}")

    # -- xdist ----------------------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """Tell each worker whether boxes are scheduled one worker each (then a box's VM is
        shared by whichever worker runs it)."""
        node.workerinput[ONE_WORKER_PER_BOX] = self.config.getoption("dist") == "load"

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        """One box's tests to one worker (its VM boots once), boxes spread over the workers;
        only in place of xdist's default (``--dist load``)."""
        if config.getoption("dist") != "load":
            return None
        from xdist.scheduler import LoadScopeScheduling

        names = self.names

        class BoxScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                split = split_cell_id(nodeid, names)
                return split[1] if split else nodeid

        return BoxScheduling(config, log)


def _first_line(report: pytest.TestReport) -> str | None:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else None


def _skip_reason(report: pytest.TestReport) -> str | None:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return getattr(report, "wasxfail", None) or _first_line(report)


def _report_text(report: pytest.TestReport) -> str:
    parts = [f"{report.nodeid} ({report.when}): {report.outcome}", report.longreprtext or ""]
    parts += [f"--- {title} ---\n{content}" for title, content in report.sections
              if "kernel log" in title or title.startswith("build log")]
    return "\n\n".join(p for p in parts if p)


# -- --vm-build-only: the build-only lane inside a pytest run ----------------------------------
class BuiltOnly(Exception):  # noqa: N818  # not an error: how a build-only test ends
    """Raised by ``kmod(...)`` in a build-only run once the module built: the test ends there,
    passed (nothing can be loaded without a VM)."""

    def __init__(self, message: str, kernel: str | None):
        super().__init__(message)
        self.kernel = kernel


class LaneBuildFailed(ModuleBuildError):
    """The module did not build against this box's kernel (build-only run): the same error as
    a failed build in a VM, so a test's ``pytest.raises(ModuleBuildError)`` holds here too."""

    def __init__(self, result: BuildResult, box: str, first: str | None):
        super().__init__(result)
        self.args = (f"box {box}: {self.args[0]}",)
        self.first, self.kernel = first, result.kernel_release


class BuildOnlyModule:
    """A module in a build-only run: ``build()`` compiles it against the test's box in its
    root filesystem on the host (raising :class:`ModuleBuildError` as in a VM); anything that
    needs a kernel (``load()``, ``unload()``, its state) builds it first, then ends the test:
    passed when it built."""

    def __init__(self, box: Box, source_dir: Path, work_root: Path):
        self.box, self.source_dir, self.work_root = box, source_dir, work_root
        self.build_result: BuildResult | None = None
        self._kernel: str | None = None
        self._first: str | None = None

    def build(self, force: bool = False, check: bool = True) -> BuildResult:
        if self.build_result is None or force:
            lane = build_on(self.box, self.source_dir, self.work_root)
            status = {"passed": 0, "build-failed": 1}.get(lane.outcome, 2)
            self.build_result = BuildResult(
                self.source_dir, LANE_DIR, lane.kernel or "-", status, lane.log,
                lane.diagnostics, ko_files=["built"] if status == 0 else [], where="host")
            self._kernel, self._first = lane.kernel, lane.first_diagnostic
        if check and not self.build_result.ok:
            raise LaneBuildFailed(self.build_result, self.box.name, self._first)
        return self.build_result

    def _end(self, *args: object, **kwargs: object):
        self.build()
        raise BuiltOnly(f"{self.source_dir.name} built against {self._kernel} (box "
                        f"{self.box.name}) in its root filesystem; build-only run: not loaded",
                        self._kernel)

    load = unload = _end

    def __enter__(self):
        return self._end()

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._end()


class BuildOnlyModules:
    """What ``kmod`` gives in a build-only run: ``kmod(path)`` (and ``kmod.all(path)``), a
    :class:`BuildOnlyModule` of the test's box."""

    def __init__(self, box: Box, resolve, work_root: Path):
        self.box, self.resolve, self.work_root = box, resolve, work_root

    def __call__(self, path, **options: object) -> BuildOnlyModule:
        return BuildOnlyModule(self.box, self.resolve(path), self.work_root)

    all = __call__


class NoVM:
    """``guest``, ``dmesg`` and ``kmem`` in a build-only run: there is no VM, so the first use
    skips the test (after the builds it asked for, if any, have ended it)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        pytest.skip(f"build-only run: {self._name}.{attribute} needs a VM")

    def __contains__(self, item: object) -> bool:
        pytest.skip(f"build-only run: {self._name} needs a VM")
