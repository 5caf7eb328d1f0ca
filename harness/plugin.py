"""The pytest plugin: options, markers, thin fixtures, and the after-test kernel check.

Fixtures: ``harness_session`` (the VM for the whole run), ``kmod`` (a module factory),
``dmesg`` (the kernel lines of this test), ``guest`` (run commands in the guest). Every test
marked ``vm`` is judged after it runs by :class:`harness.testrun.TestRun`: a new crash report
or new taint fails it with the symbolized report, and the next test gets a clean kernel.
``@pytest.mark.expect_oops("kind or title regex")`` turns that around.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.boxes import Box, Catalogue, load_catalogue
from harness.build import BUILD_MODES, ModuleBuildError
from harness.coverage import CoverageCollector, CoverageReport
from harness.errors import BuildError, CommandFailed, GuestUnreachable, HarnessError, HostError
from harness.guest import Guest, HostPaths
from harness.kmem import KmemLedger
from harness.kmod import KernelCrashed, LoadError, Module, ModuleGroup, UnloadError
from harness.kmsg import Capture
from harness.leaks import LEAK_CHECK_MODES
from harness.matrixplugin import (
    OUTCOME_PROPERTY,
    TITLE_PROPERTY,
    BuildOnlyModules,
    BuiltOnly,
    LaneBuildFailed,
    MatrixRun,
    NoVM,
    kernel_skip_reason,
    one_worker_per_box,
)
from harness.paths import state_dir, vm_project_dir
from harness.session import HarnessSession, VMOptions
from harness.testrun import TestRun
from harness.vm import VM
from harness.vmoptions import OPTIONS

RUN_KEY = pytest.StashKey[TestRun]()
# Set by a re-run (harness.nightly.plugin): start the test on a freshly restored clean kernel.
FRESH_KERNEL_KEY = pytest.StashKey[bool]()
COVERAGE_KEY = pytest.StashKey[CoverageCollector]()
COVERAGE_WRITTEN_KEY = pytest.StashKey[tuple[CoverageReport, dict[str, Path]]]()
# Why no VM could be had, per box asked for (None: the run's default box): asked once.
SESSION_ERRORS_KEY = pytest.StashKey[dict[str | None, str]]()
SESSION_KEY = pytest.StashKey[HarnessSession]()
BOX_SESSIONS_KEY = pytest.StashKey[dict[str, HarnessSession]]()
CATALOGUE_KEY = pytest.StashKey[Catalogue]()
BUILD_ONLY_KEY = pytest.StashKey[Box]()  # a build-only run's test: the box it builds for
# What becomes of the VM when the run ends.
END_ACTIONS = {"save": lambda vm: vm.power_off(), "keep": lambda vm: None,
               "destroy": lambda vm: vm.destroy()}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "kernel module tests in a VM (harness)")
    for option in OPTIONS:  # the VM's own options: one table for every front end
        group.addoption(option.pytest, **option.parser_kwargs())
    group.addoption("--vm-reuse", action="store_true",
                    help="someone else's running VM: use it from its clean snapshot and leave "
                    "it running")
    group.addoption("--vm-end", default="save", choices=list(END_ACTIONS),
                    help="what happens to the VM at the end: save (power off, keep its clean "
                    "snapshot: the next run resumes in seconds; default), keep (leave it "
                    "running), destroy")
    group.addoption("--vm-keep", action="store_true", help="the same as --vm-end=keep")
    group.addoption("--vm-build", default="auto", choices=list(BUILD_MODES),
                    help="where modules are compiled: host (in the box's root filesystem, same "
                    "headers and gcc as the guest; fast under emulation), guest, or auto "
                    "(host when its toolchain matches the guest's)")
    group.addoption("--vm-project", default=None,
                    help="folder whose .harness/ holds the VM (default: $HARNESS_VM_PROJECT, else "
                    "the rootdir), so several suites and tools (harness run, harness grade) "
                    "share one VM")
    group.addoption("--vm-leak-check", default=None, choices=list(LEAK_CHECK_MODES),
                    help="after each test, fail it for memory its modules allocated and never "
                    "freed: auto (kmemleak when the kernel has it, as the debug box does, else "
                    "the kmem tracepoint ledger), kmemleak, ledger, or off (default: the ini's "
                    "harness_leak_check, else auto)")
    group.addoption("--vm-coverage", action="store_true",
                    help="line coverage of the modules the tests build (gcov; needs a kernel "
                    "with CONFIG_GCOV_KERNEL, as the debug box's): a line per file at the end, "
                    "coverage.xml (Cobertura) and HTML in --vm-coverage-dir")
    group.addoption("--vm-coverage-dir", default="vm-coverage",
                    help="where --vm-coverage writes its reports (default: ./vm-coverage)")
    group.addoption("--vm-matrix", default=None,
                    help="a kernel matrix: every vm test once per box of this named set in "
                    "boxes.yaml's matrices (or give --vm-box a,b,c)")
    group.addoption("--vm-matrix-report", default="vm-matrix",
                    help="where a matrix run writes its grid, matrix.json and matrix.html "
                    "(default: ./vm-matrix)")
    group.addoption("--vm-build-only", action="store_true",
                    help="boot nothing: each module a test asks kmod() for is compiled against "
                    "the box's kernel in its root filesystem on the host, and the test ends "
                    "there (passed, or failed with the compiler's errors); with --vm-box a,b,c "
                    "a build grid in seconds")
    group.addoption("--vm-skip-unavailable", action="store_true",
                    help="skip vm tests when no VM can be had (default: fail them)")
    parser.addini("harness_leak_check", default="auto",
                  help="the per-test leak check: auto, kmemleak, ledger or off")
    parser.addini("harness_ignore_oops", type="linelist", default=[],
                  help="regexes of crash titles that are known noise and never fail a test")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """Keep test ids as ``test_x.py::test_hello`` when an option's value is its own word.

    pytest picks its rootdir (which test ids are relative to) before plugins' options are
    known, so in ``--vm-project /path`` it reads ``/path`` as a test path and the rootdir
    becomes a common ancestor. Now that the options are known, the same choice is made again
    with the values where they belong.
    """
    from _pytest.config.findpaths import determine_setup

    taking_values = {name for option in parser.getgroup("harness").options
                     if option.attrs().get("action") is None for name in option.names()}
    values = taking_values.intersection(args[:-1])
    if not values:
        return
    namespace, unknown = parser.parse_known_and_unknown_args(args)
    rootpath, inipath, inicfg = determine_setup(
        inifile=namespace.inifilename, args=namespace.file_or_dir + unknown,
        rootdir_cmd_arg=namespace.rootdir or None,
        invocation_dir=early_config.invocation_params.dir)
    if (rootpath, inipath) == (early_config.rootpath, early_config.inipath):
        return
    # pytest has no public way to say this: the attributes _initini sets, and the addopts
    # _preparse applied from the ini file it had found, swapped for the right file's.
    wrong_addopts = early_config.getini("addopts")
    if wrong_addopts and args[:len(wrong_addopts)] == wrong_addopts:
        del args[:len(wrong_addopts)]
    early_config._rootpath, early_config._inipath, early_config.inicfg = (  # noqa: SLF001
        rootpath, inipath, inicfg)
    early_config._inicache.clear()  # noqa: SLF001
    args[:0] = early_config.getini("addopts")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: the test runs in a real VM (harness)")
    config.addinivalue_line(
        "markers", "expect_oops(*patterns, source=None): the test must crash the kernel with a "
        "report whose kind or title matches one of the patterns (and, with source=, whose "
        "module frame is pinned on that source line)")
    config.addinivalue_line("markers", "points(n): points the test is worth when grading")
    config.addinivalue_line(
        "markers", "vm_box(name): run the test (class, file) on a VM of this box from "
        "boxes.yaml, e.g. the debug box, started on first use beside the run's own VM")
    config.addinivalue_line(
        "markers", "vm_kernel(min=None, max=None): run the test only on kernels in this range "
        "(\"6.4\"); on a box outside it the test is skipped, before any VM starts")
    config.addinivalue_line(
        "markers", "vm_isolate(key): a test whose key differs from the previous test's starts "
        "on a freshly restored kernel (the grader keys tests by student)")
    matrix = _matrix_boxes(config)
    if matrix is not None:
        config.pluginmanager.register(MatrixRun(config, *matrix), "harness-matrix")


def _matrix_boxes(config: pytest.Config) -> tuple[Catalogue, list[Box]] | None:
    """The boxes of a matrix run (--vm-matrix NAME, or --vm-box with several names)."""
    named, given = config.getoption("--vm-matrix"), config.getoption("--vm-box")
    if named and given:
        raise pytest.UsageError("give either --vm-matrix NAME or --vm-box a,b,c, not both")
    if not named and not given:
        return None
    try:
        catalogue = _catalogue(config)
        if named and named not in catalogue.matrices:
            raise pytest.UsageError(
                f"--vm-matrix {named}: {catalogue.path} has no matrix of that name; its "
                f"matrices: {', '.join(sorted(catalogue.matrices)) or 'none'}")
        if not named and "," not in given and given not in catalogue.matrices:
            catalogue.get(given)  # one box: an unknown name is told now, with the catalogue
            return None
        return catalogue, catalogue.matrix(named or given)
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from err


def _catalogue(config: pytest.Config) -> Catalogue:
    if CATALOGUE_KEY not in config.stash:
        config.stash[CATALOGUE_KEY] = load_catalogue(
            VMOptions.from_config(config).boxes_file, project_dir=_vm_project(config))
    return config.stash[CATALOGUE_KEY]


@pytest.fixture(scope="session")
def vm_matrix_box() -> str | None:
    """The box of this test's cell in a kernel matrix (the run parametrizes it); None in a
    run of one box."""
    return None


@pytest.fixture(scope="session")
def harness_session(request: pytest.FixtureRequest,
                    vm_matrix_box: str | None) -> Iterator[HarnessSession]:
    """The VM for the whole run: booted once (or resumed from its saved clean snapshot); at the
    end powered off with that snapshot kept, unless --vm-end says otherwise. In a kernel
    matrix, one per box, each in turn (the default box's VM is the run's own, the others have
    folders of their own)."""
    config = request.config
    options = VMOptions.from_config(config)
    folder = None
    if vm_matrix_box is not None:
        options.box = vm_matrix_box
        folder = None if vm_matrix_box == _catalogue(config).default else vm_matrix_box
    session = _open_session(config, options, _vm_project(config), box=folder,
                            one_worker_per_box=vm_matrix_box is not None
                            and one_worker_per_box(config))
    config.stash[SESSION_KEY] = session
    yield session
    _close_session(config, session)


def _vm_project(config: pytest.Config) -> Path:
    return Path(config.getoption("--vm-project") or os.environ.get("HARNESS_VM_PROJECT")
                or config.rootpath)


def _open_session(config: pytest.Config, options, project: Path, box: str | None = None,
                  one_worker_per_box: bool = False) -> HarnessSession:
    """A ready VM and its session; the VM's state lives in ``project`` (or a subfolder of its
    .harness/ for a second box), the catalogue is the project's. Each xdist worker has VMs of
    its own, except in a matrix whose boxes go to one worker each (``one_worker_per_box``):
    there a box's VM is the same whichever worker runs it, so it is resumed, not booted."""
    from harness.cleanstate import ready_vm
    from harness.session import make_guest, make_vm

    errors = config.stash.setdefault(SESSION_ERRORS_KEY, {})
    if options.box in errors:
        _unavailable(config, errors[options.box])
    worker = None if one_worker_per_box else os.environ.get("PYTEST_XDIST_WORKER")
    vm = None
    try:
        # Each xdist worker gets a VM of its own (its own state folder and libvirt domain).
        vm_dir = vm_project_dir(project, worker, box)
        vm = make_vm(options, vm_dir, log=sys.stderr, catalogue_dir=project)
        # The host's checks cost seconds of vagrant and virsh calls (more with several xdist
        # workers at once): run before a boot, which takes minutes and which they may spare,
        # but for a saved VM only when it could not be resumed, to say why.
        if not vm.has_snapshot():
            _check_host(vm, options)
        try:
            ready_vm(vm, reuse=True)
        except (HarnessError, OSError) as err:
            _check_host(vm, options, cause=err)
            raise
    except (HarnessError, OSError) as err:
        if vm is not None and _end_action(config) == "destroy":
            with contextlib.suppress(Exception):  # nothing left behind, as asked
                vm.destroy()
        errors[options.box] = f"no VM could be had: {err}"
    if options.box in errors:  # outside the except: the report shows the reason once
        _unavailable(config, errors[options.box])
    assert vm is not None
    guest = make_guest(vm, build_mode=config.getoption("--vm-build"))
    session = HarnessSession(vm, guest, ignore_titles=config.getini("harness_ignore_oops"),
                             leak_check_mode=_leak_check_mode(config))
    if config.getoption("--vm-coverage"):
        why_not = session.count_lines(config.stash.setdefault(COVERAGE_KEY,
                                                              CoverageCollector()))
        if why_not:
            print(f"harness: --vm-coverage: {why_not}", file=sys.stderr, flush=True)
    return session


def _check_host(vm: VM, options: VMOptions, cause: Exception | None = None) -> None:
    """HostError with doctor's report when a check fails (a remote libvirt host is not ours to
    check)."""
    from harness import doctor

    if options.libvirt_host:
        return
    checks = doctor.run_checks(vm.settings.box, fix=False, with_accel=False)
    if any(c.failed for c in checks):
        after = f"\n(what failed: {cause})" if cause else ""
        raise HostError("the host is not ready:\n" + doctor.report(checks) + after)


def _close_session(config: pytest.Config, session: HarnessSession) -> None:
    session.vm.close()
    END_ACTIONS[_end_action(config)](session.vm)


def _session_for(request: pytest.FixtureRequest) -> HarnessSession:
    """The session of the box the test asks for (``vm_box`` marker), else the run's own.
    A second box's VM starts on first use and ends with the run, as the first one does."""
    marker = request.node.get_closest_marker("vm_box")
    main: HarnessSession = request.getfixturevalue("harness_session")
    if marker is None or not marker.args or _in_matrix(request):
        return main  # in a matrix, the parametrization already chose the box
    config = request.config
    project = _vm_project(config)
    options = VMOptions.from_config(config)
    wanted = _catalogue(config).get(str(marker.args[0]))
    if wanted.name == main.vm.settings.box.name:
        return main
    others = config.stash.setdefault(BOX_SESSIONS_KEY, {})
    if wanted.name not in others:
        options.box = wanted.name
        others[wanted.name] = _open_session(config, options, project, box=wanted.name)
        config.add_cleanup(lambda: _close_session(config, others[wanted.name]))
    return others[wanted.name]


def _leak_check_mode(config: pytest.Config) -> str:
    mode = config.getoption("--vm-leak-check") or config.getini("harness_leak_check")
    if mode not in LEAK_CHECK_MODES:
        raise pytest.UsageError(f"harness_leak_check = {mode!r}: use one of "
                                + ", ".join(LEAK_CHECK_MODES))
    return mode


def _end_action(config: pytest.Config) -> str:
    if config.getoption("--vm-keep") or config.getoption("--vm-reuse"):
        return "keep"
    return config.getoption("--vm-end")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """--vm-coverage: the counters of every test, read into line counts and written out."""
    config = session.config
    collector = config.stash.get(COVERAGE_KEY, None)
    if collector is None:
        return
    folder = Path(config.invocation_params.dir) / config.getoption("--vm-coverage-dir")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:  # each xdist worker has its own VM, tests and counters
        folder = folder / worker
    report = collector.report()
    config.stash[COVERAGE_WRITTEN_KEY] = report, report.write(folder, config.rootpath)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say where modules were built (host or guest), what the tests covered and what became
    of the VM."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    if COVERAGE_WRITTEN_KEY in config.stash:
        report, written = config.stash[COVERAGE_WRITTEN_KEY]
        for summary in report.files():
            terminalreporter.write_line(f"harness: coverage {summary.line(config.rootpath)}")
        for problem in report.problems:
            terminalreporter.write_line(f"harness: coverage: {problem}")
        terminalreporter.write_line(f"harness: coverage report: {written['html']}, "
                                    f"{written['cobertura']}")
    builds = session.guest.builder.summary()
    if builds:
        terminalreporter.write_line(f"harness: {builds}")
    if session.vm.settings.isolate_network:
        terminalreporter.write_line("harness: guest network isolated: it answers the harness's "
                                    "SSH and reaches nothing (libvirt network filter)")
    terminalreporter.write_line(f"harness: VM at the end: {_end_action(config)} "
                                f"({session.vm.state})")


def _unavailable(config: pytest.Config, message: str) -> None:
    text = message + "\n(run `harness doctor` for the full check)"
    if config.getoption("--vm-skip-unavailable"):
        pytest.skip(text)
    pytest.fail(text, pytrace=False)


def _in_matrix(request: pytest.FixtureRequest) -> bool:
    return request.config.pluginmanager.has_plugin("harness-matrix")


def _box_of(request: pytest.FixtureRequest, matrix_box: str | None) -> Box:
    """The box a test will run on, known without starting it."""
    catalogue = _catalogue(request.config)
    marker = request.node.get_closest_marker("vm_box")
    if matrix_box is None and marker is not None and marker.args:
        return catalogue.get(str(marker.args[0]))
    return catalogue.get(matrix_box or VMOptions.from_config(request.config).box)


@pytest.fixture(autouse=True)
def _harness_test_run(request: pytest.FixtureRequest,
                      vm_matrix_box: str | None) -> Iterator[None]:
    item = request.node
    if item.get_closest_marker("vm") is None:
        yield
        return
    box = _box_of(request, vm_matrix_box)
    reason = kernel_skip_reason(box, item.get_closest_marker("vm_kernel"))
    if reason:
        pytest.skip(reason)
    if request.config.getoption("--vm-build-only"):
        _set_property(item, "box", box.name)
        item.stash[BUILD_ONLY_KEY] = box
        yield
        return
    session = _session_for(request)
    _set_property(item, "box", session.vm.settings.box.name)
    with contextlib.suppress(HarnessError):  # a guest that does not answer fails the test later
        _set_property(item, "kernel", session.guest.builder.kernel_release())
    isolate = item.get_closest_marker("vm_isolate")
    if item.stash.get(FRESH_KERNEL_KEY, False) and not session.clean:
        item.add_report_section("setup", "harness", session.restore_clean(
            archive_as=item.nodeid + "-before-rerun"))
    elif isolate is not None:
        note = session.isolate(str(isolate.args[0]), archive_as=item.nodeid)
        if note:
            item.add_report_section("setup", "harness", note)
    marker = item.get_closest_marker("expect_oops")
    expected = [str(a) for a in marker.args] or [""] if marker else None
    source = marker.kwargs.get("source") if marker else None
    run = session.new_test(item.nodeid, expected, source)
    item.stash[RUN_KEY] = run
    yield
    if run.clean_kernel_due:
        note = session.restore_clean(archive_as=item.nodeid)
        run.notes.append(note)
    if run.notes:
        item.add_report_section("teardown", "harness", "\n".join(run.notes))


def _set_property(item: pytest.Item, name: str, value: str) -> None:
    """A JUnit property of the test (pytest's ``record_property``), once even when re-run."""
    item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != name]
    item.user_properties.append((name, value))


def test_run_of(item: pytest.Item) -> TestRun | None:
    """The harness's record of a vm test (its modules and, after the call, its verdict), for
    other plugins (the grader) and hooks; None for a test without the vm marker."""
    return item.stash.get(RUN_KEY, None)


test_run_of.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


def _build_only(request: pytest.FixtureRequest) -> Box | None:
    return request.node.stash.get(BUILD_ONLY_KEY, None)


def _run(request: pytest.FixtureRequest) -> TestRun:
    if RUN_KEY not in request.node.stash:
        raise pytest.UsageError(
            f"{request.node.nodeid}: harness fixtures need the test to be marked "
            "@pytest.mark.vm")
    return request.node.stash[RUN_KEY]


class ModuleFactory:
    """What the ``kmod`` fixture gives: ``kmod(path)`` one module, ``kmod.all(path)`` every
    module a folder builds. Relative paths start at the test file's folder."""

    def __init__(self, run: TestRun, paths: HostPaths):
        self._run, self._paths = run, paths

    def __call__(self, path: str | Path, **options: object) -> Module:
        return self._run.module(self._paths.resolve(path), **options)

    def all(self, path: str | Path, **options: object) -> ModuleGroup:
        return self._run.module_group(self._paths.resolve(path), **options)


def _host_paths(request: pytest.FixtureRequest) -> HostPaths:
    return HostPaths(Path(request.node.path).parent, Path(request.config.rootpath))


@pytest.fixture
def kmod(request: pytest.FixtureRequest) -> ModuleFactory:
    """``m = kmod("hello")``: a module to build, load and unload in the guest."""
    box = _build_only(request)
    if box is not None:
        return BuildOnlyModules(box, _host_paths(request).resolve,  # type: ignore[return-value]
                                state_dir(_vm_project(request.config)) / "build-lane")
    return ModuleFactory(_run(request), _host_paths(request))


@pytest.fixture
def dmesg(request: pytest.FixtureRequest) -> Capture:
    """The kernel log records emitted during this test (``"text" in dmesg``, ``expect``)."""
    if _build_only(request) is not None:
        return NoVM("dmesg")  # type: ignore[return-value]
    capture = _run(request).capture
    assert capture is not None
    return capture


@pytest.fixture
def kmem(request: pytest.FixtureRequest) -> Iterator[KmemLedger]:
    """What modules allocate and free during this test (kmem tracepoints; any kernel):
    ``kmem.outstanding(module)``, ``kmem.assert_freed(module)``."""
    if _build_only(request) is not None:
        yield NoVM("kmem")  # type: ignore[misc]
        return
    run = _run(request)
    ledger = KmemLedger(run.guest.transport)
    ledger.start()
    run.watch.ledger = ledger
    yield ledger
    run.watch.ledger = None
    if run.clean_kernel_due:
        # The clean kernel restored next has its recording off already; and asking a hung or
        # dead guest costs the SSH connect timeout (20 s a test, for every hung student).
        return
    with contextlib.suppress(HarnessError):
        ledger.stop()


@pytest.fixture
def guest(request: pytest.FixtureRequest) -> Guest:
    """The guest: ``run``/``check_output``/``run_expect``, files in and out, programs."""
    if _build_only(request) is not None:
        return NoVM("guest")  # type: ignore[return-value]
    return _run(request).guest.for_test(_host_paths(request))


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: it sees what the test raised
def pytest_runtest_call(item: pytest.Item):
    run = item.stash.get(RUN_KEY, None)
    if run is None:
        return (yield)
    error: BaseException | None = None
    try:
        return (yield)
    except Exception as exc:
        error = exc
        raise
    finally:
        run.finish(error)


# What an expected crash causes in a test's own calls, and so forgives: the guest gone or not
# answering, its commands failing, a load or unload killed, the harness saying it crashed.
# Anything else (an assertion, a dmesg line that never came) still fails the test.
CRASH_CONSEQUENCES = (GuestUnreachable, CommandFailed, LoadError, UnloadError, KernelCrashed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report: pytest.TestReport = yield
    if BUILD_ONLY_KEY in item.stash and call.when == "call" and call.excinfo is not None:
        return _build_only_report(report, call.excinfo.value)
    run = item.stash.get(RUN_KEY, None)
    if run is None or call.when != "call":
        return report
    verdict = run.verdict
    if verdict is not None:
        if verdict.reports:
            _set_property(item, "crash_title", verdict.reports[0].title)
        if verdict.kernel_lines:
            lines = "\n".join(verdict.kernel_lines)
            report.sections.append(("Captured stdout kernel log", lines))
            # JUnit XML writes the sections of the teardown report, built from the item's.
            item.add_report_section("call", "stdout", "kernel log:\n" + lines)
        if verdict.failed:
            text = verdict.message()
            if call.excinfo is not None and not verdict.reports:
                text += f"\n\nthe test raised: {call.excinfo.exconly()}"
            report.outcome = "failed"
            report.longrepr = text
        elif verdict.expectation_met and report.failed:
            if call.excinfo is not None and isinstance(call.excinfo.value, CRASH_CONSEQUENCES):
                report.outcome = "passed"  # the crash the test asked for, and what it caused
                report.longrepr = None
            else:
                titles = ", ".join(r.title for r in verdict.reports)
                report.longrepr = (f"the expected kernel crash happened ({titles}), but the "
                                   f"test failed for another reason:\n{report.longrepr}")
    if report.failed:
        for module in run.modules:
            result = module.build_result
            if result is not None:
                report.sections.append((f"build log {module.source_dir.name}", result.log))
            live = verdict is not None and not (verdict.hung or verdict.guest_died)
            report.sections.append((f"module state {module.source_dir.name}",
                                    module.state(live=live)))
        if call.excinfo is not None and isinstance(call.excinfo.value, BuildError):
            error = call.excinfo.value
            report.longrepr = str(error)
            report.user_properties.append((OUTCOME_PROPERTY, "build-failed"))
            first = error.result.first_error if isinstance(error, ModuleBuildError) else None
            if first is not None:  # the grid's title: the compiler's line
                report.user_properties.append((TITLE_PROPERTY, str(first)))
    return report


def _build_only_report(report: pytest.TestReport, error: BaseException) -> pytest.TestReport:
    """A build-only test ends at its first kmod(): passed when the module built."""
    kernel = getattr(error, "kernel", None)
    if kernel:
        report.user_properties.append(("kernel", kernel))
    if isinstance(error, BuiltOnly):
        report.outcome, report.longrepr = "passed", None
        report.sections.append(("harness build-only", str(error)))
    elif isinstance(error, LaneBuildFailed):
        report.longrepr = str(error)
        report.user_properties.append((OUTCOME_PROPERTY, "build-failed"))
        if error.first:
            report.user_properties.append((TITLE_PROPERTY, error.first))
    return report
