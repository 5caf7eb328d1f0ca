"""Titling one crash report: which row of :mod:`harness.oops.patterns` it is, and its guilty frame.

A report arrives as its lines from the header on (prefixes stripped). The rows of the header's
group are tried in order; a row's :class:`~harness.oops.patterns.StackRule` walks down the lines
part by part, as syzkaller's ``extractStackFrame`` does, and names the frame the title carries.
Pure functions: no I/O, no state.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from harness.oops.patterns import (
    CORRUPTING_LINE,
    FRAME_LINES,
    HANG_ANCHORS,
    HANG_SKIP,
    SKIP_FRAMES,
    STACK,
    STACK_START,
    STALL_ANCHORS,
    STRIP_PREFIXES,
    TITLE_NORMALISERS,
    CrashFormat,
    Group,
    Part,
    StackRule,
)

MAX_TITLE = 120
_MODULE_TAG = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+\s+\[([\w-]+)\]")
# A title with a console timestamp in it was glued together from two messages.
_GARBLED_TITLE = re.compile(r"\[ *[0-9]+\.[0-9]+\]")


@dataclass(frozen=True)
class RawFrame:
    name: str  # as printed, up to the first "." or "+"
    line: int  # index into the report's lines
    module: str | None


@dataclass(frozen=True)
class Titled:
    title: str
    fmt: CrashFormat | None
    corrupted: bool
    guilty: RawFrame | None  # the frame the title names


@functools.cache
def _skip_pattern(extra: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(SKIP_FRAMES + extra))


def strip_syscall_prefix(name: str) -> str:
    """The shortest of the names left by removing one syscall-entry prefix."""
    shortest = name
    for prefix in STRIP_PREFIXES:
        if name.startswith(prefix) and len(name) - len(prefix) < len(shortest):
            shortest = name[len(prefix):]
    return shortest


def _frames_of(match: re.Match[str], text: str, line: int, skip: re.Pattern[str]
               ) -> list[RawFrame]:
    found = []
    for index in range(1, (match.re.groups or 0) + 1):
        name = match.group(index)
        if name is None:
            continue
        tag = _MODULE_TAG.match(text, match.end(index) - 1) or \
            _MODULE_TAG.search(text, match.end(index))
        module = tag.group(1) if tag else None
        # A module's own frame is never a helper: the module is what is under test.
        if module is None and skip.search(name):
            continue
        found.append(RawFrame(name, line, module))
    return found


def _corrupting(text: str) -> bool:
    return "should_fail" in text and CORRUPTING_LINE.search(text) is not None


def _frame_match(text: str) -> re.Match[str] | None:
    for pattern in FRAME_LINES:
        match = pattern.search(text)
        if match:
            return match
    return None


def _pick(rule: StackRule, frames: list[RawFrame]) -> RawFrame | None:
    if not frames:
        return None
    if rule.extractor is None:
        return frames[0]
    # A module's own frame is the representative one for its author, wherever it sits.
    in_module = next((frame for frame in frames if frame.module), None)
    if in_module is not None:
        return in_module
    return (_stall_frame if rule.extractor == "stall" else _hang_frame)(frames)


def _stall_frame(frames: list[RawFrame]) -> RawFrame | None:
    """The frame called from where the looping code was entered (a syscall, a work item)."""
    previous = frames[0]
    for frame in frames:
        name = strip_syscall_prefix(frame.name)
        if any(anchor.search(name) for anchor in STALL_ANCHORS):
            if "smp_call_function" in name:
                return RawFrame("smp_call_function", frame.line, frame.module)
            return previous
        previous = frame
    return None


def _hang_frame(frames: list[RawFrame]) -> RawFrame | None:
    """Hangs on synchronize_rcu or rtnl_lock group together; else the first frame that is not
    a waiting or locking primitive."""
    for frame in frames:
        name = strip_syscall_prefix(frame.name)
        for anchor, grouped in HANG_ANCHORS.items():
            if anchor in name:
                return RawFrame(grouped or name, frame.line, frame.module)
    for frame in frames:
        if not any(word in frame.name for word in HANG_SKIP):
            return frame
    return None


def guilty_frames(rule: StackRule, lines: list[str]) -> tuple[list[RawFrame | None], bool]:
    """One guilty frame per stack the rule reads, and whether every one was found."""
    found, ok = _walk(rule, rule.parts, lines)
    for parts in rule.fallbacks:
        if ok:
            break
        found, ok = _walk(rule, parts, lines)
    return found, ok


def _walk(rule: StackRule, parts: tuple[Part, ...], lines: list[str]
          ) -> tuple[list[RawFrame | None], bool]:
    skip = _skip_pattern(rule.skip)
    results: list[RawFrame | None] = []
    frames: list[RawFrame] = []
    ok = True
    position = 0
    stacks_read = 0
    index = 0
    while True:
        if index == len(parts) or (parts[index] is STACK and stacks_read):
            guilty = _pick(rule, frames)
            ok &= guilty is not None
            results.append(guilty)
            frames = []
        if index == len(parts):
            return results, ok
        part = parts[index]
        if part is STACK:
            stacks_read += 1
            following = parts[index + 1] if index + 1 < len(parts) else None
            while position < len(lines):
                text = lines[position]
                position += 1
                if _corrupting(text):
                    ok = False
                    break
                if STACK_START.search(text):
                    break
                if isinstance(following, re.Pattern):
                    match = following.search(text)
                    if match:
                        frames += _frames_of(match, text, position - 1, skip)
                        index += 1
                        break
                match = _frame_match(text)
                if match:
                    frames += _frames_of(match, text, position - 1, skip)
        else:
            assert isinstance(part, re.Pattern)
            while position < len(lines):
                text = lines[position]
                position += 1
                if _corrupting(text):
                    ok = False
                    break
                match = part.search(text)
                if match:
                    frames += _frames_of(match, text, position - 1, skip)
                    break
        index += 1


def normalise(text: str) -> str:
    """A title with its varying parts (addresses, numbers, offsets, lines) made constant."""
    for pattern, replacement in TITLE_NORMALISERS:
        while True:
            changed = pattern.sub(replacement, text)
            if changed == text:
                break
            text = changed
    return text


def sanitise(title: str) -> str:
    out = []
    previous = " "
    for char in title[:MAX_TITLE]:
        if char == "\t":
            char = " "
        elif not " " <= char < "\x7f":
            continue
        if char == " " and previous == " ":
            continue
        out.append(char)
        previous = char
    return "".join(out).strip()


def _has_stack(lines: list[str]) -> bool:
    """Every "Call Trace:"-like line is followed by a frame, and there is one."""
    seen = False
    for index, text in enumerate(lines):
        if not STACK_START.search(text):
            continue
        if len(lines) - index < 4:
            return False
        following = lines[index + 1:index + 16]
        for later in following:
            if STACK_START.search(later):
                break
            if "(stack is not available)" in later or _frame_match(later):
                seen = True
                break
        else:
            return False
    return seen


def title_report(group: Group, lines: list[str]) -> Titled:
    """The title of the report whose header (a line holding ``group.word``) is ``lines[0]``."""
    text = "\n".join(lines)
    first_line_end = len(lines[0])
    for fmt in group.formats:
        match = fmt.header.search(text)
        if match is None or match.start() > first_line_end:
            continue
        if fmt.report is not None:
            match = fmt.report.search(text)
            if match is None:
                continue
        args: list[str] = [value or "" for value in match.groups()]
        guilty: RawFrame | None = None
        frames_ok = True
        if fmt.stack is not None:
            start_line = text.count("\n", 0, match.start())
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1)
            part_lines = [lines[start_line][column:]] + lines[start_line + 1:]
            found, frames_ok = guilty_frames(fmt.stack, part_lines)
            for frame in found:
                args.append(strip_syscall_prefix(frame.name) if frame else "corrupted")
            guilty = next((f for f in found if f), None)
            if guilty is not None:
                guilty = RawFrame(guilty.name, guilty.line + start_line, guilty.module)
        title = fmt.fmt.format(*args)
        title = sanitise(normalise(title))
        corrupted = (fmt.corrupted or not frames_ok or bool(_GARBLED_TITLE.search(title))
                     or (not fmt.no_stack and not _has_stack(lines)))
        return Titled(title, fmt, corrupted, guilty)
    # A header word but no row: the header line is the title, and the report is garbled.
    header = lines[0][lines[0].find(group.word):] if group.word in lines[0] else lines[0]
    return Titled(sanitise(normalise(header)), None, True, None)
