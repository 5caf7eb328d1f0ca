"""One test's life in the guest: start a capture, track modules, judge the kernel afterwards.

:class:`TestRun` is one test of a :class:`harness.session.HarnessSession`: it takes the
kernel-log cursor and the taint mask at the start; at the end it unloads what the test left
loaded, reads the new kernel lines (or the serial console when the guest died), finds crash
reports, symbolizes them, compares taint, and returns a :class:`Verdict`. The pytest plugin,
the CLI and the grader are front ends over the session and this class.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import taint
from harness.build import Diagnostic
from harness.errors import CommandFailed, GuestUnreachable, HarnessError, TimeLimitExceeded
from harness.guest import Guest
from harness.kmem import LedgerError
from harness.kmod import KernelCrashed, Module, ModuleError, ModuleGroup, ModuleHung
from harness.kmsg import Capture
from harness.leaks import LeakCheck
from harness.oops.detect import Report, detect
from harness.oops.symbolize import symbolize

if TYPE_CHECKING:
    from harness.session import HarnessSession

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
    cleanup_errors: list[str] = field(default_factory=list)

    @property
    def kernel_broken(self) -> bool:
        return bool(self.reports or self.new_taint or self.hung or self.guest_died)

    @property
    def expectation_met(self) -> bool:
        if self.expected_oops is None:
            return False
        return any(_matches(pattern, report) for pattern in self.expected_oops
                   for report in self.reports)

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
            got = ", ".join(r.title for r in self.reports) or "no crash report at all"
            head = f"expected a kernel crash matching {self.expected_oops}, got: {got}"
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


@dataclass
class TestRun:
    session: HarnessSession
    name: str
    expect_oops: list[str] | None = None
    modules: list[Module] = field(default_factory=list)
    capture: Capture | None = None
    taint_before: int = 0
    serial_offset: int = 0
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)
    leak_check: LeakCheck | None = None

    @property
    def guest(self) -> Guest:
        return self.session.guest

    def start(self) -> None:
        self.serial_offset = self.session.vm.console.size()
        self.capture = self.guest.kernel_log.capture()
        self.taint_before = taint.read_taint(self.guest.transport)
        self.leak_check = self.guest.leak_check = self.session.leak_check()

    def module(self, source_dir: str | Path, **options: object) -> Module:
        module = Module(self.guest, Path(source_dir), on_sibling=self.modules.append,
                        **options)  # type: ignore[arg-type]
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
        verdict = Verdict(expected_oops=self.expect_oops)
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
        lines = self._kernel_lines(verdict, alive)
        reports = detect(lines, ignore=self.session.ignore_titles)
        ko_map = {m.name: (m.build_result.local_ko[m.name], m.source_dir)
                  for m in self.modules
                  if m.name and m.build_result and m.name in m.build_result.local_ko}
        verdict.reports = [symbolize(r, ko_map, self.session.kernel_image) for r in reports]
        if alive and verdict.guest_died is None and not crashed and not verdict.reports:
            verdict.reports += self._leaks(verdict)
        self._end_leak_check(alive and verdict.guest_died is None)
        if alive and verdict.guest_died is None:
            try:
                after = taint.read_taint(self.guest.transport)
                verdict.new_taint = taint.new_failures(self.taint_before, after)
            except GuestUnreachable as err:
                verdict.guest_died = str(err)
            except CommandFailed as err:
                verdict.cleanup_errors.append(f"could not read the kernel's taint: {err}")
        self.verdict = verdict
        return verdict

    def _leaks(self, verdict: Verdict) -> list[Report]:
        """What the test's modules leaked (after a crash the question has no answer)."""
        check = self.leak_check
        if check is None:
            return []
        try:
            return check.findings()
        except (LedgerError, CommandFailed) as err:
            verdict.cleanup_errors.append(f"the leak check ({check.method}) could not answer: "
                                          f"{err}")
        except GuestUnreachable as err:
            verdict.guest_died = str(err)
        return []

    def _end_leak_check(self, guest_alive: bool) -> None:
        check, self.leak_check, self.guest.leak_check = self.leak_check, None, None
        if check is not None and guest_alive:  # a restored kernel has none of its state
            with contextlib.suppress(HarnessError):
                check.close()

    def _unload_leftovers(self, verdict: Verdict) -> bool:
        """Unload what the test left loaded (this too can crash). False: the guest is gone."""
        # Newest load first: a module is unloaded before those it depends on.
        for module in sorted(self.modules, key=lambda m: m.loaded_order, reverse=True):
            try:
                if module.is_loaded():
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

    def _kernel_lines(self, verdict: Verdict, alive: bool) -> list[str]:
        assert self.capture is not None
        if alive:
            try:
                self.capture.refresh()
                verdict.lost_records = self.capture.lost
                verdict.kernel_lines = [r.console_line() for r in self.capture.records]
                self.capture.freeze()
                return verdict.kernel_lines
            except GuestUnreachable as err:
                verdict.guest_died = verdict.guest_died or str(err)
        self.capture.freeze()
        # The guest is hung or dead: its serial console is the only witness left.
        time.sleep(PANIC_SETTLE_S)
        serial = self.session.vm.console.read(self.serial_offset)
        verdict.kernel_lines = serial.splitlines()
        return verdict.kernel_lines
