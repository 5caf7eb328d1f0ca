"""Finding crash reports in a kernel log, titling them, and naming the guilty frames.

Small pure functions over lines (after NIPA's ``crash.py``): split the log into report blocks
at header lines from :mod:`harness.oops.patterns`, then read each block's own RIP line and call
trace, never a neighbour's (a later oops can re-print an earlier RIP).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from harness.oops.logtext import LogLine, parse_log
from harness.oops.patterns import (
    FOLLOW_UPS,
    FORMATS,
    FRAME,
    HEADER_HINT,
    HEADER_PREFIX,
    IRQ_END,
    IRQ_START,
    LOCK_AT,
    REPORT_END,
    RIP,
    SKIP_FRAMES,
    TITLE_NORMALISERS,
    CrashFormat,
)

MAX_REPORT_LINES = 200
FOLLOW_UP_WINDOW = 6  # a header this close to the previous one, before any frame, continues it
_FUNC_SUFFIX = re.compile(r"\.(?:isra|constprop|part|cold|llvm|lto_priv)(?:\.\d+)*$")
_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_KASAN_ACCESS = re.compile(r"^(?P<access>Read|Write) (?:of size \d+|at addr)")


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


def match_header(text: str) -> tuple[CrashFormat, re.Match[str]] | None:
    if not HEADER_HINT.search(text):
        return None
    text = HEADER_PREFIX.sub("", text, count=1).removesuffix(" ]")
    for fmt in FORMATS:
        match = fmt.header.search(text)
        if match and not any(s.search(text) for s in fmt.suppress):
            return fmt, match
    return None


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


def normalise(text: str) -> str:
    for pattern, replacement in TITLE_NORMALISERS:
        text = pattern.sub(replacement, text)
    return text


@dataclass
class _Block:
    fmt: CrashFormat
    match: re.Match[str]
    start: int  # index into lines
    end: int
    panicked: bool


def split_blocks(lines: list[LogLine]) -> list[_Block]:
    blocks: list[_Block] = []
    current: _Block | None = None
    frames_seen = False
    for index, line in enumerate(lines):
        text = line.text.strip()
        if current is not None:
            if REPORT_END.match(text):
                current.end = index
                current.panicked |= "Kernel panic" in text
                current = None
                continue
            if index - current.start >= MAX_REPORT_LINES:
                current.end = index - 1
                current = None
        found = match_header(text)
        if found is None:
            if current is not None and not frames_seen and (FRAME.match(text) or RIP.match(text)):
                frames_seen = True
            continue
        fmt, match = found
        if current is not None and (
            FOLLOW_UPS.match(text)
            or (index - current.start <= FOLLOW_UP_WINDOW and not frames_seen)
        ):
            current.panicked |= fmt.panicked
            continue
        if current is not None:
            current.end = index - 1
        start = index - 1 if index > 0 and _CUT_HERE.match(lines[index - 1].text.strip()) \
            else index
        current = _Block(fmt, match, start, len(lines) - 1, fmt.panicked)
        frames_seen = False
        blocks.append(current)
    return blocks


def _guilty(fmt: CrashFormat, match: re.Match[str], rip: Frame | None,
            frames: list[Frame], lock_functions: list[str]) -> Frame | str | None:
    extra_skip = [re.compile(p) for p in fmt.skip]

    def skipped(name: str) -> bool:
        return bool(SKIP_FRAMES.match(name)) or any(p.match(name) for p in extra_skip)

    for source in fmt.guilty:
        header_func = clean_function(match["func"]) if match.groupdict().get("func") else None
        if source == "header" and header_func and not skipped(header_func):
            return header_func
        if source == "lock":
            for name in lock_functions:
                if not skipped(name):
                    return name
        if source == "rip" and rip is not None and not skipped(rip.function):
            return rip
        if source in ("stack", "task"):
            for frame in frames:
                if source == "task" and frame.in_irq:
                    continue
                if frame.reliable and not skipped(frame.function):
                    return frame
    # Only helpers: name the header's or the RIP's function rather than nothing.
    if match.groupdict().get("func"):
        return clean_function(match["func"])
    return rip


def _header_frame(block: _Block, lines: list[LogLine]) -> Frame | None:
    if not block.match.groupdict().get("func"):
        return None
    text = block.match.string
    offset, length = _offsets(text, block.match.end("func"))
    module = re.match(r"\+0x[0-9a-f]+/0x[0-9a-f]+\s+\[([\w-]+)\]", text[block.match.end("func"):])
    header_line = next((ln.number for ln in lines[block.start:block.start + 2]
                        if ln.text.strip().endswith(text.strip()[-20:])), lines[block.start].number)
    return Frame(clean_function(block.match["func"]), offset, length,
                 module.group(1) if module else None, header_line)


def build_report(lines: list[LogLine], block: _Block) -> Report:
    body = lines[block.start:block.end + 1]
    rip: Frame | None = None
    frames: list[Frame] = []
    access = ""
    lock_functions: list[str] = []
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
        lock_match = LOCK_AT.search(text)
        if lock_match:
            lock_functions.append(clean_function(lock_match["func"]))
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
        access_match = _KASAN_ACCESS.match(text)
        if access_match and not access:
            access = " " + access_match["access"]
    header_frame = _header_frame(block, lines)
    if rip is None and header_frame is not None:
        rip = header_frame  # "WARNING: ... at file.c:16 func+0xe/0x15 [mod]" names the spot
    guilty = _guilty(block.fmt, block.match, rip, frames, lock_functions)
    function = guilty.function if isinstance(guilty, Frame) else guilty
    guilty_module = guilty.module if isinstance(guilty, Frame) else None
    if guilty_module is None and function:
        guilty_module = next((f.module for f in [rip, *frames] if f and f.function == function),
                             None)
    corrupted = function is None and not block.fmt.no_func
    groups = {k: (v or "") for k, v in block.match.groupdict().items()}
    groups.pop("func", None)
    for key in ("message", "rest"):
        if key in groups:
            groups[key] = normalise(groups[key].strip())
    title = block.fmt.title.format(func=function or "corrupted", access=access, **groups)
    own = frames[own_stack_from:] if own_stack_from is not None else []
    module_frame = next((f for f in [rip, *own, *frames] if f and f.module and f.reliable), None)
    return Report(
        title=title, kind=block.fmt.kind, function=function, module=guilty_module,
        module_frame=module_frame, frames=([rip] if rip else []) + frames,
        start_line=body[0].number, end_line=body[-1].number,
        lines=[line.text for line in body], corrupted=corrupted,
        panicked=block.panicked or any("Kernel panic - not syncing" in ln.text for ln in body),
    )


def detect(log: str | bytes | list[str] | list[LogLine],
           ignore: list[str] | None = None) -> list[Report]:
    """Every crash report in a log, in order. ``ignore``: regexes of titles that are noise."""
    if isinstance(log, list) and log and isinstance(log[0], str):
        log = "\n".join(log)  # type: ignore[arg-type]
    lines = parse_log(log) if isinstance(log, (str, bytes)) else log  # type: ignore[arg-type]
    ignored = [re.compile(p) for p in (ignore or [])]
    reports = [build_report(lines, block) for block in split_blocks(lines)]
    return [r for r in reports if not any(p.search(r.title) for p in ignored)]
