"""Per-test leak checks: the objects a test's modules allocated and nobody freed, as crash
reports (``memory leak in FUNC``) that fail the test like any other finding.

Two ways to know, chosen by what the guest kernel has:

- :class:`KmemleakCheck` (a kernel with ``CONFIG_DEBUG_KMEMLEAK``, the debug box): kmemleak is
  cleared before the test's first module loads; after the test's modules are unloaded it scans
  (twice, as kmemleak needs: an object is reported once it was found unreferenced and is older
  than its 5 s minimum age), and every unreferenced object whose allocation backtrace has a
  frame in a module the test loaded is a finding;
- :class:`LedgerCheck` (any kernel): the kmem tracepoint ledger of :mod:`harness.kmem`,
  restricted to call sites inside the test's modules.

A finding always names a frame of one of the test's modules (their address ranges are recorded
at load, so frames are recognised and symbolized after the unload): kmemleak's reports about the
rest of the kernel are never the test's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from harness.errors import ConfigurationError
from harness.kmem import SETTLE_S, Allocation, KmemLedger, LedgerError, ModuleSpan
from harness.oops.detect import Frame, Report
from harness.vmoptions import LEAK_CHECK_MODES

if TYPE_CHECKING:
    from harness.transport import CommandResult, Transport

KMEMLEAK = "/sys/kernel/debug/kmemleak"
KMEMLEAK_MIN_AGE_S = 5.0  # kmemleak's MSECS_MIN_AGE: younger objects are never reported

_UNREFERENCED = re.compile(r"^unreferenced object (?P<ptr>0x[0-9a-f]+) \(size (?P<size>\d+)\):")
_BACKTRACE_FRAME = re.compile(r"^\s+\[<[0-9a-f]+>\] (?P<site>\S+(?: \[[\w-]+\])?)\s*$")


class LeakCheck(Protocol):
    """What a test run asks of a leak check."""

    method: str

    def start_script(self) -> str:
        """Shell that starts the check, sent with the test's first module load in one command
        (a round trip of its own costs about 0.2 s under emulation); "" once started."""

    def started(self, error: str | None) -> None:
        """The start script ran; ``error`` is what it said when it failed."""

    def read_script(self) -> str:
        """Shell whose result :meth:`findings` can start from, sent with the test's last read
        of the guest; "" when the check has no quick read (kmemleak must wait and scan)."""

    def remember(self, span: ModuleSpan) -> None:
        """A module of the test, as it was loaded."""

    def findings(self, read: CommandResult | None = None) -> list[Report]:
        """After the test's modules are unloaded: one report per leaking allocation site
        (``read``: the result of :meth:`read_script`, run after the unload)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class LeakedObject:
    size: int
    backtrace: tuple[str, ...]  # call sites, innermost first, as kmemleak printed them


def parse_kmemleak(text: str) -> list[LeakedObject]:
    """The objects of ``/sys/kernel/debug/kmemleak``, each with its allocation backtrace."""
    objects: list[LeakedObject] = []
    size, frames, in_backtrace = None, [], False

    def flush() -> None:
        if size is not None:
            objects.append(LeakedObject(size, tuple(frames)))

    for line in text.splitlines():
        header = _UNREFERENCED.match(line)
        if header:
            flush()
            size, frames, in_backtrace = int(header["size"]), [], False
        elif line.strip() == "backtrace:":
            in_backtrace = True
        elif in_backtrace:
            frame = _BACKTRACE_FRAME.match(line)
            if frame:
                frames.append(frame["site"])
    flush()
    return objects


def leak_report(span: ModuleSpan, call_site: str, count: int, total_bytes: int,
                method: str, detail: list[str]) -> Report:
    """``memory leak in FUNC``, pinned on the module's allocating line."""
    found = span.frame(call_site)
    function, offset = found if found else (call_site.split("+")[0], 0)
    place = span.place(call_site)
    frame = Frame(function, offset, 0, span.name, 0)
    headline = (f"memory leak in {function}: {count} object(s), {total_bytes} bytes "
                f"allocated by module {span.name} were not freed by the time it was "
                f"unloaded ({method})")
    report = Report(title=f"memory leak in {function}", kind="memory leak", function=function,
                    module=span.name, module_frame=frame, frames=[frame], start_line=0,
                    end_line=0, lines=[headline, *detail])
    if place is not None:
        report.location = str(place)
        report.source_line = place.source
        report.symbolized.append(f"{function}+{offset:#x} at {place}"
                                 + (f": {place.source.strip()}" if place.source else ""))
    return report


def _group(items: list[tuple[ModuleSpan, str, int]], method: str,
           detail: Callable[[str], list[str]]) -> list[Report]:
    """(span, call site, bytes) per leaked object -> one report per call site."""
    sites: dict[tuple[str, str], list[tuple[ModuleSpan, int]]] = {}
    for span, site, size in items:
        sites.setdefault((span.name, site), []).append((span, size))
    reports = []
    for (_, site), objects in sorted(sites.items(), key=lambda item: -len(item[1])):
        span = objects[0][0]
        reports.append(leak_report(span, site, len(objects), sum(s for _, s in objects),
                                   method, detail(site)))
    return reports


@dataclass
class KmemleakCheck:
    transport: Transport
    method: str = "kmemleak"
    spans: dict[str, ModuleSpan] = field(default_factory=dict)
    prepared_at: float | None = None
    scan_seconds: float = 0.0

    def _sh(self, script: str, timeout: float = 120.0) -> str:
        return self.transport.run(script, sudo=True, timeout=timeout).check().stdout

    start_error: str | None = None

    def start_script(self) -> str:
        return "" if self.prepared_at is not None else f"echo clear > {KMEMLEAK}"

    def started(self, error: str | None) -> None:
        # Taken when the load's command returned: its allocations are no younger than this.
        self.prepared_at, self.start_error = time.monotonic(), error

    def remember(self, span: ModuleSpan) -> None:
        self.spans[span.name] = span

    def read_script(self) -> str:
        return ""

    def findings(self, read: CommandResult | None = None) -> list[Report]:
        if self.start_error is not None:
            raise LedgerError(f"kmemleak could not be cleared: {self.start_error}")
        if self.prepared_at is None or not self.spans:
            return []
        # Objects younger than kmemleak's minimum age are not reported yet.
        time.sleep(max(0.0, self.prepared_at + KMEMLEAK_MIN_AGE_S + 0.5 - time.monotonic()))
        started = time.monotonic()
        text = self._sh(f"echo scan > {KMEMLEAK}; echo scan > {KMEMLEAK}; cat {KMEMLEAK}")
        self.scan_seconds = time.monotonic() - started
        items = []
        for leaked in parse_kmemleak(text):
            for site in leaked.backtrace:
                span = next((s for s in self.spans.values() if s.holds(site)), None)
                if span is not None:  # the first frame in one of the test's modules
                    items.append((span, site, leaked.size))
                    break
        return _group(items, self.method, lambda site: [])

    def close(self) -> None:
        self.spans.clear()
        self.prepared_at = self.start_error = None


def _allocated_by(spans: dict[str, ModuleSpan], live: dict[str, Allocation]
                  ) -> list[tuple[ModuleSpan, str, int]]:
    """(span, call site, bytes) of the live allocations made by one of ``spans``."""
    return [(span, a.call_site, a.size) for a in live.values()
            for span in spans.values() if span.holds(a.call_site)]


@dataclass
class LedgerCheck:
    """The kmem ledger as a per-test check. A ledger the test itself holds (the ``kmem``
    fixture) is shared, not restarted."""

    transport: Transport
    shared: Callable[[], KmemLedger | None] = lambda: None  # the test's own ledger, if any
    ledger: KmemLedger | None = None
    method: str = "kmem ledger"
    start_error: str | None = None

    def start_script(self) -> str:
        if self.ledger is None:
            self.ledger = self.shared() or KmemLedger(self.transport)
        return "" if self.ledger.started else self.ledger.start_script()

    def started(self, error: str | None) -> None:
        if self.ledger is not None:
            self.ledger.started = error is None
        self.start_error = error

    def remember(self, span: ModuleSpan) -> None:
        if self.ledger is not None:
            self.ledger.remember(span)

    def read_script(self) -> str:
        ledger = self.ledger
        return ledger.read_script() if ledger is not None and ledger.started else ""

    def findings(self, read: CommandResult | None = None) -> list[Report]:
        if self.start_error is not None:
            raise LedgerError(f"the kmem ledger could not start: {self.start_error}")
        ledger = self.ledger
        if ledger is None or not ledger.started or not ledger.spans:
            return []
        live = ledger.live_from(read) if read is not None else ledger.live()
        for settle in SETTLE_S:  # frees still in flight (kfree_rcu) get a moment
            if not _allocated_by(ledger.spans, live):
                break
            time.sleep(settle)
            live = ledger.live()
        items = _allocated_by(ledger.spans, live)
        allocations: dict[str, list[Allocation]] = {}
        for allocation in live.values():
            allocations.setdefault(allocation.call_site, []).append(allocation)
        return _group(items, self.method,
                      lambda site: [f"  {a}" for a in allocations.get(site, [])[:5]])

    def close(self) -> None:
        # Recording goes on (the next test's start clears it): stopping would cost a command.
        self.ledger, self.start_error = None, None


def has_kmemleak(transport: Transport) -> bool:
    return transport.run(["test", "-e", KMEMLEAK], sudo=True, timeout=30).ok


def choose(transport: Transport, mode: str, kernel_has_kmemleak: bool,
           shared: Callable[[], KmemLedger | None] = lambda: None) -> LeakCheck | None:
    """The check ``mode`` asks for (auto: kmemleak when the kernel has it, else the ledger);
    None for off. A mode the kernel cannot honour is an error that says why."""
    if mode not in LEAK_CHECK_MODES:
        raise ConfigurationError(
            f"the leak check must be one of {', '.join(LEAK_CHECK_MODES)}, not {mode!r}")
    if mode == "off":
        return None
    if mode == "kmemleak" and not kernel_has_kmemleak:
        raise ConfigurationError(
            f"--vm-leak-check=kmemleak, but the guest kernel has no {KMEMLEAK} "
            "(use the debug box: --vm-box debian-12-debug)")
    if kernel_has_kmemleak and mode in ("auto", "kmemleak"):
        return KmemleakCheck(transport)
    return LedgerCheck(transport, shared)


__all__ = ["LEAK_CHECK_MODES", "KmemleakCheck", "LeakCheck", "LedgerCheck", "LedgerError",
           "choose", "has_kmemleak", "leak_report", "parse_kmemleak"]
