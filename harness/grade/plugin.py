"""The pytest side of grading: one session parametrized over the students.

Loaded with ``-p harness.grade.plugin --grade-manifest FILE``. Every test of the assignment that
asks for ``submission`` or ``student_module`` runs once per student; a student's tests stay on
one xdist worker (``xdist_group``) and start on a freshly restored kernel (``vm_isolate``).
Each finished test is written at once, atomically, to ``OUT/students/NAME/tests/TEST.json``, so
an interrupted run loses nothing already graded.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import TimeLimitExceeded
from harness.grade.spec import Spec, load_spec
from harness.kmod import Module
from harness.paths import atomic_write
from harness.untrusted import capped, capped_list, visible

STUDENT_STARTED: dict[str, float] = {}
SETUP_SECONDS: dict[str, float] = {}  # by test id, until its call is recorded


@dataclass(frozen=True)
class Submission:
    name: str
    module_dir: Path
    spec: Spec


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("harness").addoption("--grade-manifest", help="grading manifest (internal)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--grade-manifest", None):
        # Student code runs in the guest: it reaches nothing but the harness's SSH.
        config.option.vm_isolate_network = True


def _manifest(config: pytest.Config) -> dict:
    path = config.getoption("--grade-manifest")
    if not path:
        raise pytest.UsageError("harness.grade.plugin needs --grade-manifest")
    return _read_manifest(path)


@functools.lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    return json.loads(Path(path).read_text())


@functools.lru_cache(maxsize=4)
def _spec(path: str) -> Spec:
    """The spec, read once per session rather than once per test."""
    return load_spec(Path(path))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "submission" not in metafunc.fixturenames:
        return
    students = sorted(_manifest(metafunc.config)["students"])
    # The marks travel with each parameter: one xdist worker and one clean kernel per student.
    params = [pytest.param(s, id=s, marks=[pytest.mark.xdist_group(s), pytest.mark.vm_isolate(s)])
              for s in students]
    metafunc.parametrize("submission", params, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    manifest = _manifest(config)
    names = {item.originalname for item in items if _student(item)}  # type: ignore[attr-defined]
    # One student's tests back to back: a kernel restore per student, not per test.
    order = {name: index for index, name in enumerate(sorted(manifest["students"]))}
    items.sort(key=lambda item: order.get(_student(item) or "", -1))
    atomic_write(Path(manifest["out"]) / "expected-tests.json", json.dumps(sorted(names)))


@pytest.fixture
def submission(request: pytest.FixtureRequest) -> Submission:
    manifest = _manifest(request.config)
    entry = manifest["students"][request.param]
    return Submission(request.param, Path(entry["module_dir"]), _spec(manifest["spec"]))


@pytest.fixture
def student_module(submission: Submission, kmod) -> Module:
    """The student's module, checked for the required files, built with the spec's flags."""
    missing = [f for f in submission.spec.required_files
               if not (submission.module_dir / f).is_file()]
    if missing:
        pytest.fail(f"missing required file(s): {', '.join(missing)}", pytrace=False)
    # The spec's `module` names the .ko the student must build (a Makefile that builds
    # another, or several, is told so).
    module = kmod(submission.module_dir, name=submission.spec.module,
                  extra_cflags=submission.spec.extra_cflags,
                  build_timeout=submission.spec.build_timeout_s,
                  build_limit_name="time_limits.build_s")
    # Built here, before the test's own clock (time_limits.test_s) starts: the build has its
    # own limit (build_s). The tests' builds then reuse it, or its failure.
    module.build(check=False)
    return module


def _student(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("submission") if callspec else None


@pytest.hookimpl(wrapper=True, trylast=True)  # innermost: the harness judges what it raises
def pytest_runtest_call(item: pytest.Item):
    """Each student test gets ``time_limits.test_s``; past it, the test fails saying so and
    the guest, which may be stuck in the student's code, gets a clean kernel."""
    if _student(item) is None:
        return (yield)
    limit = _spec(_manifest(item.config)["spec"]).test_timeout_s

    def stop(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"test stopped after {limit:g} s (time_limits.test_s)")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_runtest_setup(item: pytest.Item) -> None:
    student = _student(item)
    if student is None:
        return
    spec = _spec(_manifest(item.config)["spec"])
    started = STUDENT_STARTED.setdefault(student, time.monotonic())
    if time.monotonic() - started > spec.student_timeout_s:
        pytest.fail(f"the student's time limit ({spec.student_timeout_s:g} s) is used up",
                    pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report: pytest.TestReport = yield
    student = _student(item)
    if student is None:
        return report
    marker = item.get_closest_marker("points")
    points = float(marker.args[0]) if marker and marker.args else 1.0
    report.user_properties += [("student", student), ("test", item.originalname),  # type: ignore[attr-defined]
                               ("points", points)]
    from harness.plugin import test_run_of

    run = test_run_of(item)
    if run is not None and call.when == "call":
        if run.verdict is not None:
            report.user_properties.append(("crashes", [
                {key: None if value is None else visible(value, 1000)
                 for key, value in crash.items()}
                for crash in run.verdict.crashes()[:MAX_CRASHES]]))
            report.user_properties.append(("kernel_lines", capped_list(
                [visible(line, MAX_LINE) for line in run.verdict.kernel_lines[-MAX_LINES:]],
                MAX_LINES, "kernel lines")))
        diagnostics = run.diagnostics()
        if diagnostics:
            report.user_properties.append(("diagnostics", [
                {"file": d.file and visible(d.file, 300), "line": d.line,
                 "severity": d.severity, "message": visible(d.message, MAX_LINE)}
                for d in diagnostics[:MAX_DIAGNOSTICS]]))
    return report


# What one test's record keeps of what the student's module and Makefile printed: any bytes,
# any amount, so bounded here (the record is what result.json and every report are made of).
MAX_LINES = 200  # the test's last kernel lines
MAX_LINE = 1000  # characters of one line (a kernel line, a diagnostic)
MAX_CRASHES = 20
MAX_DIAGNOSTICS = 50
MAX_MESSAGE = 4000  # the end of a failure's text


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if "student" not in props or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # records are written once, by the controller (or a non-xdist session)
    if report.when == "setup" and report.passed:
        # The setup holds the clean-kernel restore and the build: where a student's time goes.
        SETUP_SECONDS[report.nodeid] = report.duration
    if not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    out = Path(os.environ["HARNESS_GRADE_OUT"])
    message = ""
    if report.failed:
        message = capped(visible(str(report.longrepr)), MAX_MESSAGE, keep="tail")
    elif report.skipped and isinstance(report.longrepr, tuple):
        message = visible(report.longrepr[2], MAX_MESSAGE)
    record = {
        "test": props["test"], "outcome": report.outcome, "points": props["points"],
        "earned": props["points"] if report.passed else 0.0, "message": message,
        "seconds": round(report.duration, 2),
        "setup_seconds": round(SETUP_SECONDS.pop(report.nodeid, report.duration
                                                 if report.when == "setup" else 0.0), 2),
        "crashes": props.get("crashes", []),
        "diagnostics": props.get("diagnostics", []),
        "kernel_lines": props.get("kernel_lines", []),
    }
    path = out / "students" / props["student"] / "tests" / f"{props['test']}.json"
    atomic_write(path, json.dumps(record, indent=1))
