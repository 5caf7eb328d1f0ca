"""What a module allocated and did not free: an allocation ledger from the kernel's kmem
tracepoints, on any kernel (no KASAN or kmemleak needed).

A tracing instance of its own (``/sys/kernel/tracing/instances/harness-kmem``) records
``kmalloc`` and ``kmem_cache_alloc`` events whose call site is in the modules area, every
``kfree`` of a non-NULL pointer (the core kernel frees what modules hand it: kfree_rcu, buffers
given away), and the ``kmem_cache_free`` calls made from the modules area (an object of a
module's own cache is freed by the module; the core kernel's frees of its own caches, most of
the noise, are not recorded). Pairing them by pointer gives, for a module (its name while
loaded, its recorded address range after), the objects it allocated that nobody freed. Pointers
are hashed by the kernel's ``%p`` the same way each time, which is all pairing needs. Events
lost to a full buffer make the answer unknowable: that is an error, never a silent pass.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.errors import HarnessError, KernelFailure
from harness.oops.detect import Frame
from harness.oops.symbolize import SourceLocation, function_at, locate

if TYPE_CHECKING:
    from harness.transport import CommandResult, Transport

INSTANCE = "/sys/kernel/tracing/instances/harness-kmem"
# x86_64 modules live above this address (MODULES_VADDR); allocations from the core kernel
# are filtered out in the kernel, so the buffer holds what modules did.
MODULES_AREA_START = 0xFFFFFFFFC0000000
FREE_EVENTS = ("kfree", "kmem_cache_free")
BUFFER_KB = 8192  # per CPU
SETTLE_S = (1.0,)  # kfree_rcu frees after a grace period: look once more before a verdict

# A second instance that records the modules area's allocations, independently of the
# ledger's: a module that switches the ledger's recording off and on again (kernel code can
# write its tracing_on, or call trace_array_set_clr_event) leaves allocations here that the
# ledger lacks. (kprobes cannot watch the switches: all of kernel/trace is notrace.)
CHECK_INSTANCE = "/sys/kernel/tracing/instances/harness-kmem-check"
ALLOC_EVENTS = ("kmalloc", "kmem_cache_alloc")
STATE = "harness-kmem-state"  # the lines the read script adds after the live allocations

# The pairing of parse_trace, in the guest, over a trace that may hold 100,000 frees. It reads
# the check instance's trace first (every allocation it saw, by call site and pointer), then
# the ledger's: an allocation the check saw that the ledger lacks means the ledger was not
# recording then. It also finds this start's marker.
LIVE_ONLY_AWK = r"""
function fields() {
  event = ""; ptr = ""; site = ""
  for (i = 1; i <= NF; i++) {
    if ($i ~ /^(kmalloc|kmem_cache_alloc|kfree|kmem_cache_free):$/) event = $i
    else if ($i ~ /^call_site=/) site = $i
    else if ($i ~ /^ptr=/) { ptr = $i; break }
  }
}
FILENAME == ARGV[1] {
  fields()
  if (event == "kmalloc:" || event == "kmem_cache_alloc:") seen[site " " ptr] = 1
  next
}
/\[LOST [0-9]+ EVENTS\]/ { print; next }
index($0, "tracing_mark_write: " mark) { marked = 1; next }
{
  fields()
  if (ptr == "") next
  if (event == "kfree:" || event == "kmem_cache_free:") delete live[ptr]
  else { live[ptr] = $0; delete seen[site " " ptr] }
}
END {
  for (p in live) print live[p]
  for (key in seen) missing++
  print "harness-kmem-state missing " missing + 0
  print "harness-kmem-state marked " marked + 0
}
"""


_EVENT = re.compile(
    r"\s(?P<event>kmalloc|kmem_cache_alloc|kfree|kmem_cache_free): "
    r"call_site=(?P<site>\S+(?: \[[\w-]+\])?) ptr=(?P<ptr>[0-9a-fx]+)"
    r"(?: bytes_req=(?P<req>\d+) bytes_alloc=(?P<alloc>\d+))?")
_LOST = re.compile(r"\[LOST (\d+) EVENTS\]")
_SITE_MODULE = re.compile(r" \[(?P<module>[\w-]+)\]$")


class LedgerError(HarnessError):
    """The ledger cannot answer: tracing is unavailable, or events were lost."""


@dataclass(frozen=True)
class Allocation:
    ptr: str  # as the kernel prints it (hashed)
    size: int  # bytes asked for
    call_site: str  # `func+0x5a/0x1000 [module]`, or a raw address once the module is gone
    event: str

    def __str__(self) -> str:
        return f"{self.size} bytes at {self.call_site} ({self.event})"


@dataclass
class ModuleSpan:
    """A loaded module's name, address range (``/proc/modules``) and section addresses
    (``/sys/module/NAME/sections``): its call sites are recognised, and turned back into
    ``function+offset`` and a source line, after it is unloaded, when the kernel prints them
    as bare addresses."""

    name: str
    start: int
    size: int
    sections: dict[str, int] = field(default_factory=dict)
    ko: Path | None = None  # the host copy with debug info
    source_dir: Path | None = None

    def holds(self, call_site: str) -> bool:
        tag = _SITE_MODULE.search(call_site)
        if tag:
            return tag["module"].replace("-", "_") == self.name
        address = _address(call_site)
        return address is not None and (
            self.start <= address < self.start + self.size
            or any(base <= address < base + _SECTION_REACH for base in self.sections.values()))

    def frame(self, call_site: str) -> tuple[str, int] | None:
        """``(function, offset)`` of one of its call sites."""
        named = _NAMED_SITE.match(call_site)
        if named:
            return named["function"], int(named["offset"], 16)
        address = _address(call_site)
        if address is None or self.ko is None or not self.ko.is_file():
            return None
        below = [(base, name) for name, base in self.sections.items() if base <= address]
        if not below:
            return None
        base, section = max(below)
        return function_at(self.ko, section, address - base)

    def place(self, call_site: str) -> SourceLocation | None:
        """The source line of one of its call sites: the module's own line, not the inlined
        kmalloc() of slab.h (None without the host copy of the .ko)."""
        found = self.frame(call_site)
        if found is None or self.ko is None or not self.ko.is_file():
            return None
        frame = Frame(found[0], found[1], 0, self.name, 0)
        roots = [self.source_dir] if self.source_dir else []
        places = locate(self.ko, frame, return_address=True, source_roots=roots)
        own = [p for p in places if p.source is not None]
        # Without any source at hand: the outermost place, the module function's own line.
        return own[0] if own else (places[-1] if places else None)

    def where(self, call_site: str) -> str:
        """``llist_init+0x5a at llist.c:38: <the line>``, or the call site as it is."""
        found = self.frame(call_site)
        if found is None:
            return call_site
        function, offset = found
        text = f"{function}+{offset:#x}"
        place = self.place(call_site)
        if place is not None:
            text += f" at {place}" + (f": {place.source.strip()}" if place.source else "")
        return text


_SECTION_REACH = 1 << 20  # a call site lies within this of its section's start
_NAMED_SITE = re.compile(r"^(?P<function>[\w.]+)\+(?P<offset>0x[0-9a-f]+)")


def _address(call_site: str) -> int | None:
    try:
        return int(call_site, 16)
    except ValueError:
        return None


def parse_trace(text: str) -> tuple[dict[str, Allocation], int]:
    """The allocations still live at the end of ``text`` (by pointer), and events lost."""
    live: dict[str, Allocation] = {}
    lost = sum(int(n) for n in _LOST.findall(text))
    for match in _EVENT.finditer(text):
        ptr = match["ptr"]
        if match["event"] in FREE_EVENTS:
            live.pop(ptr, None)
        else:
            live[ptr] = Allocation(ptr, int(match["req"] or 0), match["site"], match["event"])
    return live, lost


# The tracing instance with its buffer, the allocation filter and the events enabled, recording
# off. Enabling an event patches kernel text and waits for every CPU to acknowledge it: under
# emulation on a busy host that wait once outlasted the soft-lockup watchdog (20 s), so it is
# done once per boot, before the clean snapshot, not in each test.
_MODULE_SITES = f"call_site >= {MODULES_AREA_START:#x}"
# Each event the ledger records, with the filter it is recorded under.
EVENT_FILTERS = {"kmalloc": _MODULE_SITES, "kmem_cache_alloc": _MODULE_SITES,
                 "kfree": "ptr != 0", "kmem_cache_free": _MODULE_SITES}  # kfree(NULL) frees nothing
# Steps chained with && (a failure stops the rest, without set -e: callers send these scripts
# inside larger ones, and a subshell to hold set -e costs a fork).
def _instance_set_up(instance: str, events: dict[str, str]) -> list[str]:
    return ([f"mkdir -p {instance}", f"echo 0 > {instance}/tracing_on",
             f"{{ read -r size < {instance}/buffer_size_kb && [ \"$size\" = {BUFFER_KB} ] || "
             f"echo {BUFFER_KB} > {instance}/buffer_size_kb; }}"]
            + [f"echo '{condition}' > {instance}/events/kmem/{event}/filter"
               for event, condition in events.items()]
            + [f"echo 1 > {instance}/events/kmem/{event}/enable" for event in events])


_SET_UP = " &&\n".join(
    _instance_set_up(INSTANCE, EVENT_FILTERS)
    + _instance_set_up(CHECK_INSTANCE, {event: EVENT_FILTERS[event] for event in ALLOC_EVENTS}))
_READY = (f"{{ read -r enabled 2>/dev/null < "
          f"{CHECK_INSTANCE}/events/kmem/{ALLOC_EVENTS[-1]}/enable && [ \"$enabled\" = 1 ]; }}")
_SET_UP_UNLESS_READY = f"{{ {_READY} || {{\n{_SET_UP}\n}}; }}"
# What the clean snapshot holds of the ledger: a saved VM set up otherwise is replaced.
SET_UP_DIGEST = hashlib.sha256(_SET_UP_UNLESS_READY.encode()).hexdigest()[:12]


def prepare_guest(transport: Transport) -> bool:
    """Make the ledger's tracing instance ready, recording off (once per boot, before the clean
    snapshot). Returns whether the guest could: a kernel without tracefs or the kmem events
    cannot, and its ledger will say so when a test asks for one."""
    return transport.run(_SET_UP_UNLESS_READY, sudo=True, timeout=120).ok


@dataclass
class KmemLedger:
    """Start it before the module is loaded; ask it after. Each answer first checks that the
    recording ran uninterrupted since the start (:meth:`interruptions`): the module under test
    runs in the same kernel as the tracing that watches it."""

    transport: Transport
    spans: dict[str, ModuleSpan] = field(default_factory=dict)
    started: bool = False
    # This start's marker in the buffer: gone when something cleared the records since.
    mark: str = field(default_factory=lambda: f"harness-kmem-start-{secrets.token_hex(8)}")

    def _sh(self, script: str, timeout: float = 60.0) -> str:
        result = self.transport.run(script, sudo=True, timeout=timeout)
        if not result.ok:
            raise LedgerError(f"the kmem ledger needs tracefs and the kmem events: "
                              f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def start(self) -> None:
        """A fresh, empty ledger (earlier events cleared)."""
        self._sh(self.start_script())
        self.started = True

    def start_script(self) -> str:
        """What :meth:`start` runs, for a caller that sends it with another command. The
        tracing instances, their buffers and enabled events are normally there already
        (:func:`prepare_guest`, before the clean snapshot); the script sets them up only on a
        guest that lacks them. The ledger records before the check instance starts counting
        (and is read after it), so the check never counts an allocation the ledger could not
        have seen."""
        self.mark = f"harness-kmem-start-{secrets.token_hex(8)}"
        return (f"{_SET_UP_UNLESS_READY} &&\necho 0 > {INSTANCE}/tracing_on &&\n"
                f"echo 0 > {CHECK_INSTANCE}/tracing_on &&\n"
                f": > {INSTANCE}/trace &&\n: > {CHECK_INSTANCE}/trace &&\n"
                f"echo 1 > {INSTANCE}/tracing_on &&\n"
                f"echo {self.mark} > {INSTANCE}/trace_marker &&\n"
                f"echo 1 > {CHECK_INSTANCE}/tracing_on")

    def stop(self) -> None:
        """Stop recording (the instances stay for the next ledger)."""
        if self.started:
            self.transport.run(f"echo 0 > {INSTANCE}/tracing_on; "
                               f"echo 0 > {CHECK_INSTANCE}/tracing_on", sudo=True, timeout=60)
            self.started = False

    def remember(self, span: ModuleSpan) -> None:
        """Record a module's address range while it is loaded (``Module.load`` does)."""
        self.spans[span.name] = span

    def live(self) -> dict[str, Allocation]:
        """The allocations still live (``LedgerError`` when events were lost: then nobody can
        tell)."""
        if not self.started:
            raise LedgerError("the kmem ledger was not started before the module was loaded")
        return self.live_from(self.transport.run(self.read_script(), sudo=True, timeout=120))

    def read_script(self) -> str:
        """What :meth:`live` runs, for a caller that sends it with other commands."""
        # Paired in the guest: only the allocations still live (and lost-event marks) cross,
        # then the state that tells whether the recording ran uninterrupted. The check
        # instance is counted first: it started after the ledger and is read before it.
        state = "; ".join(
            [f"awk -v mark={shlex.quote(self.mark)} {shlex.quote(LIVE_ONLY_AWK)} "
             f"{CHECK_INSTANCE}/trace {INSTANCE}/trace",
             f"echo {STATE} tracing_on $(cat {INSTANCE}/tracing_on)"]
            + [f"echo {STATE} enable:{event} $(cat {INSTANCE}/events/kmem/{event}/enable)"
               for event in EVENT_FILTERS]
            + [f"echo {STATE} filter:{event} $(cat {INSTANCE}/events/kmem/{event}/filter)"
               for event in EVENT_FILTERS])
        return state

    def live_from(self, result: CommandResult) -> dict[str, Allocation]:
        """:meth:`live` of a :meth:`read_script` run."""
        if not result.ok:
            raise LedgerError(f"the kmem ledger needs tracefs and the kmem events: "
                              f"{(result.stderr or result.stdout).strip()}")
        problems = interruptions(result.stdout)
        if problems:
            raise LedgerError(
                "the kmem ledger's recording was interrupted during the test: "
                + "; ".join(problems) + ". What the module allocated and freed cannot be "
                "checked, so the leak check fails (a module must leave the kernel's tracing "
                "alone)")
        live, lost = parse_trace(result.stdout)
        if lost:
            raise LedgerError(
                f"{lost} kmem events were lost to a full trace buffer ({BUFFER_KB} KiB per "
                "CPU): the ledger cannot tell what was freed")
        return live

    def outstanding(self, module: str | _Named) -> list[Allocation]:
        """What ``module`` (a name or a Module) allocated since the start and nobody has freed.
        After an unload, frees still in flight (kfree_rcu) are waited for a little."""
        module = module if isinstance(module, str) else (module.name or "")
        span = self.spans.get(module)
        for settle in (0.0, *SETTLE_S):
            time.sleep(settle)
            live = self.live()
            mine = [a for a in live.values()
                    if (span.holds(a.call_site) if span else a.call_site.endswith(f"[{module}]"))]
            if not mine or module_is_loaded(self.transport, module):
                return mine
        return mine


    def assert_freed(self, module: str | _Named) -> None:
        """Fail (``MemoryLeak``) when ``module`` left anything allocated."""
        __tracebackhide__ = True
        name = module if isinstance(module, str) else (module.name or "")
        leaked = self.outstanding(name)
        if leaked:
            raise MemoryLeak(describe(name, leaked, self.spans.get(name)))


def interruptions(output: str) -> list[str]:
    """What the state lines of a :meth:`KmemLedger.read_script` run say went wrong with the
    recording since the start: switched off, an event disabled or refiltered, the records
    cleared, or allocations the check instance recorded that the ledger lacks."""
    state: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(STATE + " "):
            key, _, value = line[len(STATE) + 1:].partition(" ")
            state[key] = value.strip()
    if not state:
        return []  # no state lines: an older read (tests' fakes); nothing to judge
    problems = []
    if state.get("tracing_on") != "1":
        problems.append(f"its recording was switched off (tracing_on is "
                        f"{state.get('tracing_on') or 'unreadable'})")
    for event, condition in EVENT_FILTERS.items():
        if state.get(f"enable:{event}") != "1":
            problems.append(f"the kmem:{event} event was disabled")
        elif state.get(f"filter:{event}") != condition:
            problems.append(f"the kmem:{event} event's filter was changed to "
                            f"{state.get(f'filter:{event}')!r}")
    if state.get("marked") != "1":
        problems.append("its records were cleared")
    missing = int(state.get("missing", "0")) if state.get("missing", "").isdigit() else 0
    if missing:
        problems.append(f"it was switched off for a while: {missing} allocation(s) from the "
                        "modules area that the check instance recorded are missing from its "
                        "records")
    return problems


class MemoryLeak(KernelFailure):
    """A module left objects allocated that nobody freed."""


class _Named(Protocol):
    name: str | None


def module_is_loaded(transport: Transport, name: str) -> bool:
    return transport.run(["test", "-d", f"/sys/module/{name}/sections"], timeout=30).ok


def span_script(name: str) -> str:
    """Shell that prints what :func:`parse_span` reads of a loaded module: the shell's own
    ``read``, since a process per file costs about 30 ms under emulation."""
    # Quoted: the name comes from a file name the module's Makefile chose.
    sections = shlex.quote(f"/sys/module/{name}/sections")
    return (f"while read -r line; do case $line in {shlex.quote(name + ' ')}*) echo \"$line\";; "
            "esac; done < /proc/modules; "
            f"for f in {sections}/.* {sections}/*; do "
            "[ -f \"$f\" ] && read -r a < \"$f\" && echo \"$f:$a\"; done; true")


def parse_span(name: str, text: str, ko: Path | None = None,
               source_dir: Path | None = None) -> ModuleSpan | None:
    """The module's address range and section addresses from :func:`span_script`'s output
    (run as root: others see zeros)."""
    lines = text.splitlines()
    fields = lines[0].split() if lines else []
    if len(fields) < 6:
        return None
    sections = {}
    for line in lines[1:]:
        path, _, address = line.partition(":")
        if address.startswith("0x"):
            sections[path.rpartition("/")[2]] = int(address, 16)
    try:
        return ModuleSpan(name, int(fields[5], 16), int(fields[1]), sections, ko, source_dir)
    except ValueError:
        return None


def describe(module: str, leaked: list[Allocation], span: ModuleSpan | None = None) -> str:
    """``memory leak in llist_init: 6 object(s), 192 bytes, allocated at llist_init+0x5a at
    llist.c:38: <line>``, one line per call site, for a failure."""
    sites: dict[str, list[Allocation]] = {}
    for allocation in leaked:
        sites.setdefault(allocation.call_site, []).append(allocation)
    lines = []
    for site, allocations in sorted(sites.items(), key=lambda item: -len(item[1])):
        found = span.frame(site) if span else None
        function = found[0] if found else site.split("+")[0]
        where = span.where(site) if span else site
        total = sum(a.size for a in allocations)
        lines.append(f"memory leak in {function}: {len(allocations)} object(s), {total} bytes, "
                     f"allocated at {where}")
    return "\n".join(lines)
