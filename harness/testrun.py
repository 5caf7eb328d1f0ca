"""One test's life in the guest: start a capture, track modules, judge the kernel afterwards.

:class:`TestRun` is one test, given what it uses of its session explicitly
(:class:`RunServices`, built by :meth:`harness.session.HarnessSession.new_test`): it takes the
kernel-log cursor and the taint mask at the start; at the end it unloads what the test left
loaded, reads the new kernel lines (or the serial console when the guest died), finds crash
reports, symbolizes them, compares taint, and returns a :class:`Verdict`. The pytest plugin,
the CLI and the grader are front ends over the session and this class.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import console, coverage, taint
from harness.build import Diagnostic
from harness.errors import CommandFailed, GuestUnreachable, HarnessError, TimeLimitExceeded
from harness.guest import Guest
from harness.kmem import LedgerError
from harness.kmod import (
    AllocationWatch,
    KernelCrashed,
    Module,
    ModuleError,
    ModuleGroup,
    ModuleHung,
)
from harness.kmsg import READ_COMMAND, Capture
from harness.leaks import LeakCheck
from harness.oops.detect import Report, detect
from harness.oops.symbolize import symbolize

if TYPE_CHECKING:
    from harness.console import SerialConsole
    from harness.oops.symbolize import KernelImage
    from harness.transport import CommandResult

PANIC_SETTLE_S = 5.0


@dataclass
class Verdict:
    reports: list[Report] = field(default_factory=list)
    new_taint: list[taint.TaintFlag] = field(default_factory=list)
    hung: str | None = None  # what hung
    guest_died: str | None = None  # why we think so
    kernel_lines: list[str] = field(default_factory=list)
    lost_records: int = 0
    expected_oops: list[str] | None = None  # patterns from expect_oops, None when not expected
    # expect_oops(..., source="kfree(again);"): the crash must be pinned on this source line
    expected_source: str | None = None
    cleanup_errors: list[str] = field(default_factory=list)

    @property
    def kernel_broken(self) -> bool:
        return bool(self.reports or self.new_taint or self.hung or self.guest_died)

    @property
    def expectation_met(self) -> bool:
        if self.expected_oops is None:
            return False
        return any(_matches(pattern, report) and self._pinned(report)
                   for pattern in self.expected_oops for report in self.reports)

    def _pinned(self, report: Report) -> bool:
        return self.expected_source is None or (
            report.source_line is not None
            and report.source_line.strip() == self.expected_source.strip())

    @property
    def failed(self) -> bool:
        if self.expected_oops is not None:
            return not self.expectation_met
        return self.kernel_broken

    def crashes(self) -> list[dict[str, str | None]]:
        """Each report as a front end records it: title, location, source line, function."""
        return [{"title": r.title, "location": r.location, "source": r.source_line,
                 "module_function": r.module_function} for r in self.reports]

    def message(self) -> str:
        if self.expected_oops is not None and not self.expectation_met:
            got = ", ".join(r.title + (f" at {r.location}: {r.source_line.strip()!r}"
                                       if self.expected_source and r.source_line else "")
                            for r in self.reports) or "no crash report at all"
            at = (f" at the source line {self.expected_source.strip()!r}"
                  if self.expected_source else "")
            head = f"expected a kernel crash matching {self.expected_oops}{at}, got: {got}"
        elif self.reports and all(r.kind == "memory leak" for r in self.reports):
            head = "memory this test's modules allocated was never freed"
        else:
            head = "the kernel went wrong during this test"
        parts = [head]
        for report in self.reports:
            parts.append(report.summary())
        if self.new_taint:
            parts.append("new kernel taint: " + taint.describe(self.new_taint))
        if self.hung:
            parts.append(f"hang: {self.hung}")
        if self.guest_died:
            parts.append(f"the guest stopped answering: {self.guest_died}")
        if self.lost_records:
            parts.append(f"{self.lost_records} kernel log records were lost to ring-buffer "
                         "overrun before they could be read")
        return "\n\n".join(parts)


def _matches(pattern: str, report: Report) -> bool:
    if pattern.lower() in (report.kind.lower(), report.title.lower()):
        return True
    return bool(re.search(pattern, report.title))


@dataclass(frozen=True)
class RunServices:
    """What one test uses of its session, handed over when the test starts."""

    guest: Guest
    box: str  # the name of the box whose VM the test runs on
    console: Callable[[], SerialConsole]  # the VM's serial console (read when the guest died)
    ignore_titles: list[str]  # crash titles the run ignores (harness_ignore_oops)
    kernel_image: Callable[[], KernelImage | None]  # vmlinux with debug info, when at hand
    coverage: coverage.CoverageCollector | None  # the run's line counts, when counted
    gcov: Callable[[], coverage.GcovRunner]
    leak_check: Callable[[AllocationWatch], LeakCheck | None]  # a fresh one for this test


@dataclass
class TestRun:
    services: RunServices
    name: str
    expect_oops: list[str] | None = None
    expect_source: str | None = None
    modules: list[Module] = field(default_factory=list)
    capture: Capture | None = None
    taint_before: int = 0
    serial_offset: int = 0
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)
    leak_check: LeakCheck | None = None
    # Who watches this test's allocations (the kmem fixture's ledger, the leak check): handed
    # to each module the test makes.
    watch: AllocationWatch = field(default_factory=AllocationWatch)

    @property
    def guest(self) -> Guest:
        return self.services.guest

    @property
    def box(self) -> str:
        """The name of the box whose VM this test runs on."""
        return self.services.box

    @property
    def session(self) -> None:
        raise AttributeError(
            "TestRun.session is gone: a test run is given what it uses of its session "
            "(run.services: guest, box, console, ...; run.guest and run.box for short); the "
            "session itself is the harness_session fixture")

    def start(self) -> None:
        self.serial_offset = self.services.console().size()
        parts = {"kmsg": READ_COMMAND, "taint": taint.TAINT_COMMAND}
        if self.services.coverage is not None:  # this test's counters start from zero
            parts["gcov"] = coverage.RESET_COMMAND
        state = self.guest.transport.run_parts(parts, sudo=True, timeout=60)
        records = self.guest.kernel_log.records_from(state["kmsg"])
        self.capture = self.guest.kernel_log.capture(records[-1].seq if records else -1)
        self.taint_before = taint.parse_taint(state["taint"])
        self.leak_check = self.watch.leak_check = self.services.leak_check(self.watch)

    @property
    def clean_kernel_due(self) -> bool:
        """The test is judged and broke the kernel: a clean one must be restored before
        anything else runs in the guest (which may be hung or dead meanwhile)."""
        return self.verdict is not None and self.verdict.kernel_broken

    def module(self, source_dir: str | Path, **options: object) -> Module:
        module = Module(self.guest, Path(source_dir), on_sibling=self.modules.append,
                        watch=self.watch, **options)  # type: ignore[arg-type]
        self.modules.append(module)
        return module

    def diagnostics(self) -> list[Diagnostic]:
        """The compiler's diagnostics of the test's last module build ([] when none ran)."""
        builds = [m.build_result for m in self.modules if m.build_result is not None]
        return builds[-1].diagnostics if builds else []

    def module_group(self, source_dir: str | Path, **options: object) -> ModuleGroup:
        """Every module the folder builds, tracked like ``module``'s."""
        return ModuleGroup.of(self.module(source_dir, **options))

    def finish(self, test_error: BaseException | None = None) -> Verdict:
        verdict = Verdict(expected_oops=self.expect_oops, expected_source=self.expect_source)
        if isinstance(test_error, (ModuleHung, TimeLimitExceeded)):
            verdict.hung = str(test_error)
        # A test may have caught the exception; the module remembers.
        verdict.hung = verdict.hung or next((m.hung for m in self.modules if m.hung), None)
        crashed = any(m.crashed for m in self.modules)
        alive = verdict.hung is None and not isinstance(test_error, GuestUnreachable)
        if isinstance(test_error, GuestUnreachable):
            verdict.guest_died = str(test_error)
        if alive and not crashed and not isinstance(test_error, KernelCrashed):
            alive = self._unload_leftovers(verdict)
        state = self._read_state(verdict) if alive else {}
        alive = alive and verdict.guest_died is None
        lines = self._kernel_lines(verdict, state.get("kmsg"))
        reports = detect(lines, ignore=self.services.ignore_titles)
        ko_map = {m.name: (m.build_result.local_ko[m.name], m.source_dir)
                  for m in self.modules
                  if m.name and m.build_result and m.name in m.build_result.local_ko}
        verdict.reports = [symbolize(r, ko_map, self.services.kernel_image()) for r in reports]
        if alive and not crashed and not verdict.reports:
            verdict.reports += self._leaks(verdict, state.get("leaks"))
        self._end_leak_check(alive)
        self._collect_coverage(state.get("gcov"), alive)
        if alive:
            try:
                after = taint.parse_taint(state["taint"])
                verdict.new_taint = taint.new_failures(self.taint_before, after)
            except (CommandFailed, ValueError) as err:
                verdict.cleanup_errors.append(f"could not read the kernel's taint: {err}")
        self.verdict = verdict
        return verdict

    def _read_state(self, verdict: Verdict) -> dict[str, CommandResult]:
        """The test's kernel log, taint mask and the leak check's quick read, in one command
        (each round trip costs about 0.2 s under emulation). {} when the guest is gone."""
        parts = {"kmsg": READ_COMMAND, "taint": taint.TAINT_COMMAND}
        leak_read = self.leak_check.read_script() if self.leak_check is not None else ""
        if leak_read:
            parts["leaks"] = leak_read
        profiled = self._profiled() if self.services.coverage is not None else []
        if profiled:
            parts["gcov"] = coverage.read_script(m.remote_dir for m in profiled)
        try:
            return self.guest.transport.run_parts(parts, sudo=True, timeout=120)
        except GuestUnreachable as err:
            verdict.guest_died = verdict.guest_died or str(err)
            return {}

    def _profiled(self) -> list[Module]:
        """The test's modules built with gcov profiling, one per build folder."""
        folders = {m.remote_dir: m for m in self.modules
                   if m.build_result is not None and m.build_result.local_gcno}
        return list(folders.values())

    def _collect_coverage(self, read: CommandResult | None, alive: bool) -> None:
        collector = self.services.coverage
        profiled = self._profiled() if collector is not None else []
        if collector is None or not profiled:
            return
        if read is None or not alive:
            collector.not_counted(f"{self.name}: not counted: the guest died or hung, and its "
                                  "counters with it")
            return
        files = coverage.parse_read(read.stdout)
        gcov = self.services.gcov()
        for module in profiled:
            prefix = module.remote_dir.rstrip("/") + "/"
            gcda = {path[len(prefix):]: data for path, data in files.items()
                    if path.startswith(prefix)}
            assert module.build_result is not None
            collector.add(coverage.Counters(self.name, module.source_dir, module.remote_dir,
                                            gcda, module.build_result.local_gcno), gcov)

    def _leaks(self, verdict: Verdict, read: CommandResult | None) -> list[Report]:
        """What the test's modules leaked (after a crash the question has no answer)."""
        check = self.leak_check
        if check is None:
            return []
        try:
            return check.findings(read)
        except (LedgerError, CommandFailed) as err:
            verdict.cleanup_errors.append(f"the leak check ({check.method}) could not answer: "
                                          f"{err}")
        except GuestUnreachable as err:
            verdict.guest_died = str(err)
        return []

    def _end_leak_check(self, guest_alive: bool) -> None:
        check, self.leak_check, self.watch.leak_check = self.leak_check, None, None
        if check is not None and guest_alive:  # a restored kernel has none of its state
            with contextlib.suppress(HarnessError):
                check.close()

    def _unload_leftovers(self, verdict: Verdict) -> bool:
        """Unload what the test left loaded (this too can crash). False: the guest is gone."""
        # Newest load first: a module is unloaded before those it depends on. Only modules that
        # load() loaded and unload() did not unload can still be there: one question for them.
        suspects = [m for m in self.modules if m.may_be_loaded]
        try:
            loaded = self.guest.loaded_modules() if suspects else set()
        except GuestUnreachable as err:
            verdict.guest_died = str(err)
            return False
        for module in sorted(suspects, key=lambda m: m.loaded_order, reverse=True):
            try:
                if module.name in loaded:
                    module.unload()
                    self.notes.append(f"unloaded {module.name}, which the test left loaded")
            except ModuleHung as err:
                verdict.hung = str(err)
                return False
            except KernelCrashed:
                return True  # the detector reads the report from the log
            except ModuleError as err:
                verdict.cleanup_errors.append(str(err))
            except GuestUnreachable as err:
                verdict.guest_died = str(err)
                return False
        return True

    def _kernel_lines(self, verdict: Verdict, read: CommandResult | None) -> list[str]:
        """The test's kernel lines: from ``read`` (the guest's log, read after the test), or
        from the serial console when the guest could not be asked."""
        assert self.capture is not None
        if read is not None:
            self.capture.refresh(read)
            verdict.lost_records = self.capture.lost
            verdict.kernel_lines = [r.console_line() for r in self.capture.records]
            self.capture.freeze()
            return verdict.kernel_lines
        self.capture.freeze()
        # The guest is hung or dead: its serial console is the only witness left, once the
        # kernel has finished printing its last words.
        console.settle(self.services.console(), limit_s=PANIC_SETTLE_S)
        serial = self.services.console().read(self.serial_offset)
        verdict.kernel_lines = serial.splitlines()
        return verdict.kernel_lines
