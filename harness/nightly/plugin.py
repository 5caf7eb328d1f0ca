"""The nightly's pytest side: known failures (``--vm-known-failures``) and re-runs with a flaky
verdict (``--vm-reruns``).

- A failed test whose crash title or failure message an entry of the known-failures file
  explains is reported like an xfail (``x``; JUnit: skipped, type ``pytest.xfail``, with the
  entry's file:line and reason); a test an entry covers that passes is reported as *fixed*.
- A failed vm test runs again, up to N times, on a freshly restored clean kernel in the same VM
  (a small hook of ours rather than pytest-rerunfailures, whose re-runs have torn down and set
  up session fixtures again, i.e. a VM power-off and resume, and which has no clean-kernel step:
  pytest-rerunfailures issues 51, 174, 234, 314). Each failed attempt shows as ``R``; a test
  that passes on a re-run is *flaky*: it passes, with the first failure's report kept in its
  report and a ``harness_flaky`` property in JUnit, and is listed at the end.

Every test's box, kernel and crash title go to JUnit as properties (set by the harness plugin);
``harness history add`` reads them from there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from harness.nightly.known import KnownFailures, KnownFailuresError, load_known_failures
from harness.plugin import FRESH_KERNEL_KEY, test_run_of

KNOWN_KEY = pytest.StashKey[KnownFailures]()
FLAKY_PROPERTY = "harness_flaky"
FIXED_PROPERTY = "harness_known_fixed"
KNOWN_PREFIX = "known failure ("


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness")
    group.addoption("--vm-known-failures", default=None, metavar="PATH",
                    help="YAML list of known failures (test: GLOB, box: GLOB, match: REGEX, "
                    "reason: TEXT): a failure an entry explains is reported as known and does "
                    "not fail the run; an entry whose test passes is reported as fixed")
    group.addoption("--vm-reruns", type=int, default=0, metavar="N",
                    help="run a failed vm test again, up to N times, each on a freshly restored "
                    "clean kernel; passing on a re-run makes it flaky (reported, first failure "
                    "kept)")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Summary(), "harness-nightly-summary")
    if config.getoption("--vm-reruns", 0) < 0:
        raise pytest.UsageError("--vm-reruns: give 0 or more re-runs")
    path = config.getoption("--vm-known-failures", None)
    if path:
        try:
            config.stash[KNOWN_KEY] = load_known_failures(Path(path))
        except KnownFailuresError as err:
            raise pytest.UsageError(str(err)) from err


def _property(item_or_report, name: str) -> str | None:
    return next((str(v) for k, v in item_or_report.user_properties if k == name), None)


def _failure_texts(item: pytest.Item, call: pytest.CallInfo[None],
                   report: pytest.TestReport) -> list[str]:
    """What an entry's ``match`` is searched in: the crash titles, else the exception."""
    run = test_run_of(item)
    texts = [r.title for r in run.verdict.reports] if run and run.verdict else []
    if call.excinfo is not None:
        texts.append(call.excinfo.exconly())
    elif not texts:
        texts.append(report.longreprtext.strip().splitlines()[0] if report.longreprtext else "")
    return texts


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the harness's verdict
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report: pytest.TestReport = yield
    known = item.config.stash.get(KNOWN_KEY, None)
    if known is None or call.when != "call":
        return report
    box = _property(item, "box")
    if report.failed:
        entry = known.explaining(item.nodeid, box, _failure_texts(item, call, report))
        if entry is not None:
            report.outcome = "skipped"
            report.wasxfail = entry.describe()
    elif report.passed and not hasattr(report, "wasxfail"):
        entry = known.covering(item.nodeid, box)
        if entry is not None:
            item.user_properties.append((FIXED_PROPERTY, entry.where))
            report.user_properties.append((FIXED_PROPERTY, entry.where))
    return report


class _ParentsOf:
    """What pytest's teardown keeps set up: the item's parents (session, module, class) and so
    their fixtures (the VM), not the item's own; passed as ``nextitem`` between attempts."""

    def __init__(self, item: pytest.Item) -> None:
        self._chain = item.listchain()[:-1]

    def listchain(self) -> list:
        return self._chain


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    reruns = item.config.getoption("--vm-reruns", 0)
    if not reruns or item.get_closest_marker("vm") is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    first_failure: str | None = None
    for attempt in range(reruns + 1):
        final = attempt == reruns
        reports = runtestprotocol(item, log=False,
                                  nextitem=nextitem if final else _ParentsOf(item))  # type: ignore[arg-type]
        failed = next((r for r in reports if r.failed), None)
        if failed is not None and not final:
            if first_failure is None:
                first_failure = failed.longreprtext
            failed.outcome = "rerun"  # type: ignore[assignment]
            item.ihook.pytest_runtest_logreport(report=failed)
            # The next attempt starts on a clean kernel, restored in its setup unless the
            # failure's own teardown restored one already (a crash does).
            item.stash[FRESH_KERNEL_KEY] = True
            continue
        if failed is None and first_failure is not None:
            note = f"flaky: failed {attempt} of {attempt + 1} attempts, then passed"
            for report in reports:
                if report.when in ("call", "teardown"):
                    report.user_properties.append((FLAKY_PROPERTY, note))
                if report.when == "call":
                    report.sections.append(("harness: first failure (flaky test)",
                                            first_failure))
        for report in reports:
            item.ihook.pytest_runtest_logreport(report=report)
        break
    item.stash[FRESH_KERNEL_KEY] = False
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.outcome == "rerun":
        return "rerun", "R", ("RERUN", {"yellow": True})
    if report.when == "call" and report.passed and _property(report, FLAKY_PROPERTY):
        return "flaky", "~", ("FLAKY", {"yellow": True})
    return None


class Summary:
    """Collects known, fixed and flaky tests from the reports (on xdist's controller: from
    every worker's) and lists them at the end of the run."""

    def __init__(self) -> None:
        self.known: list[tuple[str, str]] = []  # test, entry
        self.fixed: list[tuple[str, str]] = []
        self.flaky: list[tuple[str, str]] = []  # test, what happened

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        wasxfail = getattr(report, "wasxfail", "")
        if report.skipped and wasxfail.startswith(KNOWN_PREFIX):
            self.known.append((report.nodeid, wasxfail))
        if fixed := _property(report, FIXED_PROPERTY):
            self.fixed.append((report.nodeid, f"known failure ({fixed}) passed"))
        if report.passed and (flaky := _property(report, FLAKY_PROPERTY)):
            self.flaky.append((report.nodeid, flaky))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        sections = (("known failures (not failing the run)", self.known),
                    ("fixed: known failures that passed (delete their entries)", self.fixed),
                    ("flaky: failed, then passed on a re-run", self.flaky))
        for title, rows in sections:
            if rows:
                terminalreporter.section(f"harness: {title}", sep="-")
                for test, why in rows:
                    terminalreporter.write_line(f"{test}: {why}")
