"""Finding crash reports in a kernel log, titling them, and naming the guilty frames.

Small pure functions over lines: split the log into report blocks at header lines (a word of
one of :mod:`harness.oops.patterns`' groups), title each with :mod:`harness.oops.title`, and read
each block's own RIP line and call trace for its module frame, never a neighbour's (a later oops
can re-print an earlier RIP).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from harness.oops.logtext import LogLine, parse_log
from harness.oops.patterns import (
    FOLLOW_UPS,
    FRAME,
    GROUPS,
    HEADER_HINT,
    HEADER_LEAD,
    IRQ_END,
    IRQ_START,
    LOCK_AT,
    REPORT_END,
    RIP,
    Group,
)
from harness.oops.title import Titled, normalise, title_report

MAX_REPORT_LINES = 200  # of a report as shown
MAX_TITLE_LINES = 1000  # read for a report's title: its call traces can follow a long preamble
_FUNC_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)*$")
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_REPLAYED = "** replaying previous printk message **"
_CPU_TRACEBACK = "Sending NMI from CPU"
_UNRELIABLE = " (unreliable)"  # powerpc's mark of a frame that may not be a caller


@dataclass(frozen=True)
class Frame:
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
        data = asdict(self)
        data.pop("module_frame")
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
    if not match:
        return None
    offset, length = _offsets(text, match.end("func"))
    return Frame(clean_function(match["func"]), offset, length, match["module"], line,
                 reliable=not match["unreliable"], in_irq=in_irq)


def _offsets(text: str, pos: int) -> tuple[int, int]:
    found = re.match(r"\+0x([0-9a-f]+)/0x([0-9a-f]+)", text[pos:])
    return (int(found[1], 16), int(found[2], 16)) if found else (0, 0)


def clean_function(name: str) -> str:
    return _FUNC_SUFFIX.sub("", name)


__all__ = ["Frame", "Report", "detect", "normalise", "parse_frame"]




def header_group(text: str) -> Group | None:
    """The group whose word starts a report on this line, if any."""
    if not HEADER_HINT.search(text):
        return None
    for group in GROUPS:
        position = text.find(group.word)
        if position < 0 or any(s.search(text) for s in group.suppress):
            continue
        if position == 0 or HEADER_LEAD.fullmatch(text, 0, position):
            return group
    return None


@dataclass
class _Block:
    group: Group
    start: int  # index into lines: the header
    end: int  # last line shown
    title_end: int  # last line read for the title
    panicked: bool = False


def split_blocks(lines: list[LogLine]) -> list[_Block]:
    blocks: list[_Block] = []
    current: _Block | None = None
    for index, line in enumerate(lines):
        text = line.text
        if current is not None and index <= current.end:
            if REPORT_END.match(text.strip()):
                current.end = index
                current.panicked |= "Kernel panic" in text
            elif index - current.start >= MAX_REPORT_LINES:
                current.end = index - 1
        group = header_group(text)
        if group is None:
            continue
        if index + 1 < len(lines) and _REPLAYED in lines[index + 1].text:
            continue
        if blocks and FOLLOW_UPS.search(text):
            blocks[-1].panicked |= "Kernel panic" in text
            continue
        if current is not None:
            current.end = min(current.end, index - 1)
            current.title_end = index - 1
        start = index - 1 if index > 0 and _CUT_HERE.match(lines[index - 1].text.strip()) \
            else index
        current = _Block(group, start, len(lines) - 1, len(lines) - 1,
                         "Kernel panic" in text)
        blocks.append(current)
    return blocks


def _title_lines(lines: list[LogLine], block: _Block, header: int) -> list[str]:
    """The block's lines from its header on, as its printer wrote them: with caller ids, only
    the header's own task or CPU (and every CPU's once an all-CPU backtrace starts)."""
    context = lines[header].context
    if context is None:
        return [line.text for line in lines[header:min(block.title_end,
                                                       header + MAX_TITLE_LINES) + 1]
                if not line.text.endswith(_UNRELIABLE)]
    # Another task's report starting meanwhile does not end this one's.
    window = lines[header:header + MAX_TITLE_LINES]
    selected, all_cpus = [], False
    for line in window:
        if _CPU_TRACEBACK in line.text:
            all_cpus = True
        if line.text.endswith(_UNRELIABLE):
            continue
        if line.context in (None, context) or (all_cpus and line.context.startswith("C")):
            selected.append(line.text)
    return selected


def build_report(lines: list[LogLine], block: _Block) -> Report:
    header = block.start + 1 if block.start < len(lines) and \
        header_group(lines[block.start].text) is None else block.start
    titled: Titled = title_report(block.group, _title_lines(lines, block, header))
    body = lines[block.start:block.end + 1]
    rip: Frame | None = None
    frames: list[Frame] = []
    in_irq = False
    # Lockdep prints the dependency chain's stacks first and the offending task's own stack
    # after "stack backtrace:": that one is where the module did it.
    own_stack_from: int | None = None
    awaiting_own_stack = False
    for line in body:
        text = line.text.strip()
        if text == "stack backtrace:":
            awaiting_own_stack = True
            continue
        if IRQ_START.match(text):
            in_irq = True
            continue
        if IRQ_END.match(text):
            in_irq = False
            continue
        if LOCK_AT.search(text):
            continue
        rip_match = RIP.match(text)
        if rip_match:
            if rip is None:
                offset, length = _offsets(text, rip_match.end("func"))
                rip = Frame(clean_function(rip_match["func"]), offset, length,
                            rip_match["module"], line.number)
            continue
        frame = parse_frame(text, line.number, in_irq)
        if frame is not None and line is not body[0]:
            if awaiting_own_stack:
                own_stack_from, awaiting_own_stack = len(frames), False
            frames.append(frame)
    if rip is None:
        rip = _header_frame(lines[header])
    guilty = titled.guilty
    function = clean_function(guilty.name) if guilty else None
    module = guilty.module if guilty else None
    if module is None and function:
        module = next((f.module for f in [rip, *frames] if f and f.function == function), None)
    own = frames[own_stack_from:] if own_stack_from is not None else []
    module_frame = next((f for f in [rip, *own, *frames] if f and f.module and f.reliable), None)
    fmt = titled.fmt
    return Report(
        title=titled.title, kind=fmt.kind if fmt else block.group.word.rstrip(": "),
        function=function, module=module, module_frame=module_frame,
        frames=([rip] if rip else []) + frames,
        start_line=body[0].number, end_line=body[-1].number,
        lines=[line.text for line in body], corrupted=titled.corrupted,
        panicked=(block.panicked or bool(fmt and fmt.panicked)
                  or any("Kernel panic - not syncing" in ln.text for ln in body)),
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
    if isinstance(log, list) and log and isinstance(log[0], str):
        log = "\n".join(log)  # type: ignore[arg-type]
    lines = parse_log(log) if isinstance(log, (str, bytes)) else log  # type: ignore[arg-type]
    ignored = [re.compile(p) for p in (ignore or [])]
    reports = [build_report(lines, block) for block in split_blocks(lines)]
    return [r for r in reports if not any(p.search(r.title) for p in ignored)]
