"""Finding crash reports in a kernel log, titling them, and naming the guilty frames.

Small pure functions over lines: split the log into report blocks at header lines (a word of
one of :mod:`harness.oops.patterns`' groups), title each with :mod:`harness.oops.title`, and read
each block's own RIP line and call trace for its module frame, never a neighbour's (a later oops
can re-print an earlier RIP).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from harness.oops.logtext import Log, LogLine, find_all, read_log, unglue
from harness.oops.patterns import (
    FOLLOW_UPS,
    FRAME,
    GROUPS,
    HEADER_ANCHORS,
    HEADER_LEAD,
    IRQ_END,
    IRQ_START,
    MESSAGES_WITH_STACK,
    REPORT_END,
    RIP,
    Group,
)
from harness.oops.title import Titled, normalise, title_report

__all__ = ["Frame", "Report", "detect", "detect_log", "first_report_start", "normalise",
           "parse_frame"]

MAX_REPORT_LINES = 200  # of a report as shown
MAX_TITLE_LINES = 1000  # read for a report's title: its call traces can follow a long preamble
_FUNC_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)*$")
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_REPLAYED = "** replaying previous printk message **"
_CPU_TRACEBACK = "Sending NMI from CPU"
_UNRELIABLE = " (unreliable)"  # powerpc's mark of a frame that may not be a caller
_UNRELIABLE_LINE = re.compile(r"^.* \(unreliable\)\n?", re.MULTILINE)


class Frame(NamedTuple):
    """One call-trace frame (a tuple: a report holds hundreds, made by the thousand a log)."""

    function: str
    offset: int
    length: int
    module: str | None
    line: int  # line number in the input
    reliable: bool = True
    in_irq: bool = False

    def __str__(self) -> str:
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.function}+{self.offset:#x}/{self.length:#x}{mod}"


@dataclass
class Report:
    title: str
    kind: str
    function: str | None  # the guilty function
    module: str | None  # the guilty function's module, when it is in one
    module_frame: Frame | None  # the first frame inside a module (RIP first)
    frames: list[Frame]
    start_line: int
    end_line: int
    lines: list[str]
    corrupted: bool = False
    panicked: bool = False
    location: str | None = None  # file:line of the module frame, once symbolized
    source_line: str | None = None
    symbolized: list[str] = field(default_factory=list)  # module frames with file:line
    # KASAN's object history, module frames only: "allocated by f at x.c:40: <line>"
    history: list[str] = field(default_factory=list)
    # core-kernel frames placed in the kernel's source (a kernel with debug info at hand)
    kernel_places: dict[str, str] = field(default_factory=dict)

    @property
    def module_function(self) -> str | None:
        return self.module_frame.function if self.module_frame else None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy. Shallow: every list of a report holds strings or frames, so
        dataclasses.asdict's deep copy of each (96 % of `harness oops --json`) buys nothing."""
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("lines", "symbolized", "history"):
            data[name] = list(data[name])  # type: ignore[call-overload]
        data["kernel_places"] = dict(self.kernel_places)
        data["frames"] = [str(f) for f in self.frames]
        data["module_function"] = self.module_function
        data["module_frame"] = str(self.module_frame) if self.module_frame else None
        return data

    def summary(self, max_lines: int = 40) -> str:
        """Title, symbolized location with the source line, and the trimmed report."""
        out = [self.title]
        if self.module_frame:
            out.append(f"  in module {self.module_frame.module}: {self.module_frame}")
        if self.location:
            out.append(f"  at {self.location}" + (f": {self.source_line.strip()}"
                                                   if self.source_line else ""))
        for extra in self.symbolized[1:]:
            out.append(f"  called from {extra}")
        for event in self.history:
            out.append(f"  {event}")
        if self.kernel_places:
            out.append("  kernel frames: " + ", ".join(
                f"{frame.split('+')[0]} ({where})" for frame, where in
                list(self.kernel_places.items())[:6]))
        # Unreliable "? func" frames are noise for a reader; they stay in self.lines.
        body = [line for line in self.lines if not line.lstrip().startswith("? ")][:max_lines]
        out.append(f"  --- report (log lines {self.start_line}-{self.end_line}) ---")
        out += [f"  {line}" for line in body]
        if len(body) == max_lines:
            out.append(f"  ... (the whole report is in the kernel log section, lines "
                       f"{self.start_line}-{self.end_line})")
        return "\n".join(out)


def parse_frame(text: str, line: int, in_irq: bool = False) -> Frame | None:
    match = FRAME.match(text)
    return _frame(match, line, not match["unreliable"], in_irq) if match else None


def _frame(match: re.Match[str], number: int, reliable: bool, in_irq: bool) -> Frame:
    """A frame from a match of FRAME or RIP (their func, offset, length and module groups)."""
    return Frame(clean_function(match["func"]), int(match["offset"], 16),
                 int(match["length"], 16), match["module"], number, reliable, in_irq)


def clean_function(name: str) -> str:
    return _FUNC_SUFFIX.sub("", name) if "." in name else name


def header_group(text: str) -> Group | None:
    """The group whose word starts a report on this line, if any."""
    for group in GROUPS:
        position = text.find(group.word)
        if position < 0 or any(s.search(text) for s in group.suppress):
            continue
        if position == 0 or (HEADER_LEAD.fullmatch(text, 0, position) if group.after_lead
                             else text[:position].isspace()):
            return group
    return None


@dataclass
class _Block:
    group: Group
    header: int  # index of the header line
    start: int  # first line shown (a "cut here" line before the header, or the header)
    end: int  # last line shown
    title_end: int  # last line read for the title
    panicked: bool = False


def _header_candidates(log: Log) -> list[int]:
    """The lines holding a header word (a plain search a word: faster than one regex
    alternation of them all)."""
    return sorted({log.line_at(hit) for word in HEADER_ANCHORS for hit in find_all(log.text, word)})


def _header_at(log: Log, index: int) -> Group | None:
    """The group of the header on this line, unless it is none or a replayed message."""
    group = header_group(log.texts[index] if log.records else unglue(log, index))
    if group is None or index + 1 < len(log.texts) and _REPLAYED in log.texts[index + 1]:
        return None
    return group


def _block_start(log: Log, header: int) -> int:
    """The first line shown of a report: a "cut here" line before its header, or the header."""
    return header - 1 if header > 0 and _CUT_HERE.match(log.texts[header - 1].strip()) \
        else header


def first_report_start(log: Log) -> int | None:
    """The first line of the first report that begins whatever precedes it (a header no
    earlier report can take as its follow-up), as its block starts: a log cut there is two
    logs whose reports are the whole log's. Line 0 and the last line are not taken: what is
    before and after them is not in ``log``."""
    for index in _header_candidates(log):
        if 0 < index < len(log.texts) - 1 and _header_at(log, index) is not None \
                and not FOLLOW_UPS.search(log.texts[index]):
            return _block_start(log, index)
    return None


def split_blocks(log: Log) -> list[_Block]:
    """Report blocks, found by searching the whole log for header words."""
    headers = [(index, group) for index in _header_candidates(log)
               if (group := _header_at(log, index)) is not None]
    if not headers:
        return []
    ends = sorted(line for line in (log.line_at(hit) for hit in find_all(log.text, "---[ end"))
                  if REPORT_END.match(log.texts[line].strip()))
    interruptions = sorted(log.line_at(hit) for message in MESSAGES_WITH_STACK
                           for hit in find_all(log.text, message))
    blocks: list[_Block] = []
    for index, group in headers:
        text = log.texts[index]
        if blocks and FOLLOW_UPS.search(text):
            blocks[-1].panicked |= "Kernel panic" in text
            continue
        if blocks:
            previous = blocks[-1]
            previous.end = min(previous.end, index - 1)
            previous.title_end = index - 1
        start = _block_start(log, index)
        end = min(len(log.texts) - 1, start + MAX_REPORT_LINES - 1)
        after = bisect.bisect_right(ends, index)  # ends are sorted: the first one after
        closing = ends[after] if after < len(ends) and ends[after] <= end else None
        panicked = "Kernel panic" in text
        if closing is not None:
            end = closing
            panicked |= "Kernel panic" in log.texts[closing]
        blocks.append(_Block(group, index, start, end, len(log.texts) - 1, panicked))
    for block in blocks:
        after = bisect.bisect_right(interruptions, block.header)
        if after < len(interruptions) and log.context(block.header) is None:
            block.title_end = min(block.title_end, interruptions[after] - 1)
    return blocks


def _title_text(log: Log, block: _Block) -> str:
    """The block's text from its header on, as its printer wrote it: with caller ids, only the
    header's own task or CPU (and every CPU's once an all-CPU backtrace starts)."""
    header = block.header
    context = log.context(header)
    if context is None:
        text = log.span(header, min(block.title_end, header + MAX_TITLE_LINES))
        if _UNRELIABLE in text:
            text = _UNRELIABLE_LINE.sub("", text)
        return text
    # Another task's report starting meanwhile does not end this one's.
    last = min(len(log.texts), header + MAX_TITLE_LINES)
    everyone = last  # from here on (an all-CPU backtrace), every CPU's lines are kept too
    found = log.text.find(_CPU_TRACEBACK, *log.bounds(header, last - 1))
    if found >= 0:
        everyone = log.line_at(found)
    # The lines kept, found in the log's index of each caller's lines: a report's window
    # interleaves many callers, and most of it is not kept.
    by_context = log.lines_by_context
    kept = (_lines_in(by_context.get(context, []), header, last)
            + _lines_in(by_context.get(None, []), header, last))
    for cpu in log.cpu_contexts:
        if cpu != context:
            kept += _lines_in(by_context[cpu], everyone, last)
    kept.sort()
    text = "\n".join(map(log.texts.__getitem__, kept))
    return _UNRELIABLE_LINE.sub("", text) if _UNRELIABLE in text else text


def _lines_in(indices: list[int], first: int, stop: int) -> list[int]:
    """The members of a sorted list of line indices from ``first`` up to ``stop``."""
    return indices[bisect.bisect_left(indices, first):bisect.bisect_left(indices, stop)]


class LazyFrames(list):
    """A report's call-trace frames, read from its lines when first used: titling a report
    needs its trace read only down to the guilty frame, and most callers never look."""

    def __init__(self, source: Callable[[], list[Frame]] | Iterable[Frame] = ()) -> None:
        super().__init__()
        self._load: Callable[[], list[Frame]] | None = None
        if callable(source):
            self._load = source
        else:
            self.extend(source)

    def _fill(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            self.extend(load())

    def __iter__(self) -> Iterator[Frame]:
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        self._fill()
        return super().__getitem__(index)

    def __eq__(self, other: object) -> bool:
        self._fill()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._fill()
        return super().__repr__()


# A frame inside a module anywhere in a text: most reports have none.
_MODULE_FRAME = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+\s+\[[\w-]+\]")
_RIP_WORDS = ("IP", "pc :", "PC is at")


def _rip_only(log: Log, block: _Block) -> Frame | None:
    """The block's RIP frame, found by its words alone (what _read_frames finds first)."""
    start, end = log.bounds(block.start, block.end)
    lines = sorted({log.line_at(hit) for word in _RIP_WORDS
                    for hit in find_all(log.text, word, start, end)})
    for index in lines:
        text = log.texts[index]
        if index in (block.start, block.header) or "+0x" not in text:
            continue
        found = RIP.match(text.strip())
        if found:
            return _frame(found, log.number(index), True, False)
    return None


def _read_frames(log: Log, block: _Block, modules_only: bool
                 ) -> tuple[Frame | None, list[Frame], int | None]:
    """The block's RIP frame, its call-trace frames (only those inside a module, if asked) and
    where the offending task's own stack starts among them (after lockdep's chain)."""
    if modules_only and not _MODULE_FRAME.search(log.text, *log.bounds(block.start, block.end)):
        return _rip_only(log, block), [], None
    rip: Frame | None = None
    frames: list[Frame] = []
    own_stack_from: int | None = None
    in_irq = False
    after_backtrace = False
    for index, text in enumerate(log.texts[block.start:block.end + 1]):
        # Most lines are neither frames nor markers: substring tests pass them by.
        if "+0x" not in text:
            if "<" in text or "stack backtrace:" in text:
                stripped = text.strip()
                if IRQ_START.match(stripped):
                    in_irq = True
                elif IRQ_END.match(stripped):
                    in_irq = False
                elif stripped == "stack backtrace:":
                    after_backtrace = True
            continue
        if index == 0 or block.start + index == block.header:
            continue
        if rip is None and ("IP" in text or "pc :" in text or "PC is at" in text):
            found = RIP.match(text.strip())
            if found:
                rip = _frame(found, log.number(block.start + index), True, False)
                continue
        if modules_only and "[" not in text:
            continue
        found = FRAME.match(text)
        if found is None or (modules_only and not found["module"]):
            continue
        if after_backtrace and own_stack_from is None:
            own_stack_from = len(frames)
        frames.append(_frame(found, log.number(block.start + index), not found["unreliable"],
                             in_irq))
    return rip, frames, own_stack_from


def build_report(log: Log, block: _Block) -> Report:
    titled: Titled = title_report(block.group, _title_text(log, block))
    rip, in_modules, own_stack_from = _read_frames(log, block, modules_only=True)
    if rip is None:
        rip = _header_frame(log.line(block.header))
    guilty = titled.guilty
    function = clean_function(guilty.name) if guilty else None
    module = guilty.module if guilty else None
    if module is None and function:
        module = next((f.module for f in [rip, *in_modules]
                       if f and f.module and f.function == function), None)
    own = in_modules[own_stack_from:] if own_stack_from is not None else []
    module_frame = next((f for f in [rip, *own, *in_modules] if f and f.module and f.reliable),
                        None)

    def all_frames() -> list[Frame]:
        # The very objects module_frame and the RIP are: callers find them by identity.
        known = {frame: frame for frame in in_modules}
        frames = [known.get(frame, frame)
                  for frame in _read_frames(log, block, modules_only=False)[1]]
        return ([rip] if rip else []) + frames

    fmt = titled.fmt
    lines = log.texts[block.start:block.end + 1]
    return Report(
        title=titled.title, kind=fmt.kind if fmt else block.group.word.rstrip(": "),
        function=function, module=module, module_frame=module_frame,
        frames=LazyFrames(all_frames),
        start_line=log.number(block.start), end_line=log.number(block.end),
        lines=lines, corrupted=titled.corrupted,
        panicked=(block.panicked or bool(fmt and fmt.panicked)
                  or log.text.find("Kernel panic - not syncing",
                                   *log.bounds(block.start, block.end)) >= 0),
    )


_HEADER_FRAME = re.compile(r"\bat (?:\S+:\d+ )?(?P<func>[A-Za-z_.$][\w.$]*)"
                           r"\+0x([0-9a-f]+)/0x([0-9a-f]+)(?:\s+\[(?P<module>[\w-]+)\])?")


def _header_frame(line: LogLine) -> Frame | None:
    """"WARNING: CPU: 0 PID: 1 at x.c:16 func+0xe/0x15 [mod]" names the spot."""
    match = _HEADER_FRAME.search(line.text)
    if match is None:
        return None
    return Frame(clean_function(match["func"]), int(match[2], 16), int(match[3], 16),
                 match["module"], line.number)


def detect(log: str | bytes | list[str] | list[LogLine],
           ignore: list[str] | None = None) -> list[Report]:
    """Every crash report in a log, in order. ``ignore``: regexes of titles that are noise."""
    if isinstance(log, list):
        if log and isinstance(log[0], LogLine):
            parsed = Log([ln.text for ln in log], [ln.raw for ln in log],  # type: ignore[union-attr]
                         [ln.context for ln in log], [ln.number for ln in log],  # type: ignore[union-attr]
                         records=True)
        else:
            parsed = read_log("\n".join(log))  # type: ignore[arg-type]
    else:
        parsed = read_log(log)
    ignored = [re.compile(p) for p in (ignore or [])]
    return [r for r in detect_log(parsed) if not any(p.search(r.title) for p in ignored)]


def detect_log(log: Log, before: int | None = None) -> list[Report]:
    """The crash reports of a parsed log; with ``before``, those whose header is above it."""
    return [build_report(log, block) for block in split_blocks(log)
            if before is None or block.header < before]
