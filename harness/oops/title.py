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
from typing import NamedTuple

from harness.oops.demangle import demangle
from harness.oops.logtext import find_all
from harness.oops.patterns import (
    CORRUPTING_LINE,
    FRAME_LINE,
    HANG_ANCHORS,
    HANG_SKIP,
    LEAD_WORDS,
    SKIP_FRAMES,
    STACK,
    STACK_START,
    STALL_ANCHOR,
    STRIP_PREFIXES,
    TITLE_NORMALISERS,
    CrashFormat,
    Group,
    Part,
    StackRule,
)

MAX_TITLE = 120
STACK_CHECK_CHARS = 12_000  # about 150 lines: the report's own traces
_MODULE_TAG = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+\s+\[([\w-]+)\]")
# A title with a console timestamp in it was glued together from two messages.
_GARBLED_TITLE = re.compile(r"\[ *[0-9]+\.[0-9]+\]")


class RawFrame(NamedTuple):
    name: str  # as printed, up to the first "." or "+"
    module: str | None


@dataclass(frozen=True)
class Titled:
    title: str
    fmt: CrashFormat | None
    corrupted: bool
    guilty: RawFrame | None  # the frame the title names


_SKIP_ALWAYS = re.compile("|".join(SKIP_FRAMES))


@functools.cache
def _skip_pattern(extra: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(extra))


@functools.lru_cache(maxsize=65536)
def _skipped(extra: tuple[str, ...], name: str) -> bool:
    """Whether a frame name is a helper under a rule's skip list (the same helpers recur in
    every trace: remembered). The common list is compiled once, each rule's extras apart."""
    return (_SKIP_ALWAYS.search(name) is not None
            or bool(extra) and _skip_pattern(extra).search(name) is not None)


@functools.lru_cache(maxsize=8192)
def strip_syscall_prefix(name: str) -> str:
    """The shortest of the names left by removing one syscall-entry prefix."""
    shortest = name
    for prefix in STRIP_PREFIXES:
        if name.startswith(prefix) and len(name) - len(prefix) < len(shortest):
            shortest = name[len(prefix):]
    return shortest


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end < 0 else end


def _frames_of(match: re.Match[str], text: str, skip: tuple[str, ...]) -> list[RawFrame]:
    found = []
    line_end = _line_end(text, match.end())
    tagged = text.find("[", match.end(), line_end) >= 0
    for index, name in enumerate(match.groups(), start=1):
        if name is None:
            continue
        if name.startswith("_R"):
            name = demangle(name)  # a Rust frame: skip rules and titles use its path
        module = None
        if tagged:
            tag = _MODULE_TAG.search(text, match.end(index), line_end)
            module = tag.group(1) if tag else None
        # A module's own frame is never a helper: the module is what is under test.
        if module is None and _skipped(skip, name):
            continue
        found.append(RawFrame(name, module))
    return found


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


@functools.lru_cache(maxsize=8192)
def _enters_looping_code(name: str) -> bool:
    """Whether a frame is where looping code is entered (the same few recur in every trace)."""
    return STALL_ANCHOR.search(strip_syscall_prefix(name)) is not None


def _stall_frame(frames: list[RawFrame]) -> RawFrame | None:
    """The frame called from where the looping code was entered (a syscall, a work item)."""
    previous = frames[0]
    for frame in frames:
        if _enters_looping_code(frame.name):
            name = strip_syscall_prefix(frame.name)
            if "smp_call_function" in name:
                return RawFrame("smp_call_function", frame.module)
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
                return RawFrame(grouped or name, frame.module)
    for frame in frames:
        if not any(word in frame.name for word in HANG_SKIP):
            return frame
    return None


def guilty_frames(rule: StackRule, text: str) -> tuple[list[RawFrame | None], bool]:
    """One guilty frame per stack the rule reads in ``text``, and whether all were found."""
    found, ok = _walk(rule, rule.parts, text)
    for parts in rule.fallbacks:
        if ok:
            break
        found, ok = _walk(rule, parts, text)
    return found, ok


def _first(pattern: re.Pattern[str], text: str, start: int, end: int) -> int:
    """The start of the line where ``pattern`` first matches in text[start:end], or end."""
    match = _search(pattern, text, start, end)
    return text.rfind("\n", 0, match.start()) + 1 if match else end


def _search(pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None
            ) -> re.Match[str] | None:
    """``pattern.search`` on one line at a time, led by a plain search for the words one of
    which its every match holds: an alternation without a common prefix leaves the regex
    engine trying it at every character."""
    end = len(text) if end is None else end
    words = LEAD_WORDS.get(pattern)
    if words is None:
        return pattern.search(text, start, end)
    hits = {word: text.find(word, start, end) for word in words}
    while start < end:
        live = [hit for hit in hits.values() if hit >= 0]
        if not live:
            return None
        hit = min(live)
        line_end = min(_line_end(text, hit), end)
        match = pattern.search(text, text.rfind("\n", 0, hit) + 1, line_end)
        if match:
            return match
        start = line_end + 1
        for word, found in hits.items():
            if 0 <= found < start:
                hits[word] = text.find(word, start, end)
    return None


def _first_frames(text: str, position: int, skip: tuple[str, ...]) -> list[RawFrame]:
    """The frames of the first frame line from ``position`` that has one not skipped, unless
    a line starting another trace comes first."""
    checked = position
    for match in FRAME_LINE.finditer(text, position):
        if _first(STACK_START, text, checked, match.start()) < match.start():
            return []
        checked = match.start()
        found = _frames_of(match, text, skip)
        if found:
            return found
    return []


def _corrupting_line(text: str, start: int, end: int, anywhere: bool) -> int:
    if not anywhere or text.find("should_fail", start, end) < 0:
        return end
    return _first(CORRUPTING_LINE, text, start, end)


def _walk(rule: StackRule, parts: tuple[Part, ...], text: str
          ) -> tuple[list[RawFrame | None], bool]:
    """syzkaller's extractStackFrame over one text: each pattern part consumes lines up to
    and including its match; STACK reads frames until a line starts another trace, holds
    the next part, or comes from fault injection."""
    skip = rule.skip
    fault_injection = "should_fail" in text
    results: list[RawFrame | None] = []
    frames: list[RawFrame] = []
    ok = True
    position = 0
    stacks_read = 0
    index = 0
    size = len(text)
    while True:
        if index == len(parts) or (parts[index] is STACK and stacks_read):
            guilty = _pick(rule, frames)
            ok &= guilty is not None
            results.append(guilty)
            frames = []
        if index == len(parts):
            return results, ok
        part = parts[index]
        if position >= size:
            index += 1
            continue
        if part is STACK:
            stacks_read += 1
            following = parts[index + 1] if index + 1 < len(parts) else None
            if following is None and rule.extractor is None and not fault_injection:
                # The last part, and its first frame is the pick: read down to that frame
                # only (a trace can be hundreds of frames deep, the log long after it).
                if not frames:
                    frames += _first_frames(text, position, skip)
                position = size
                index += 1
                continue
            corrupt = _corrupting_line(text, position, size, fault_injection)
            start_line = _first(STACK_START, text, position, corrupt)
            next_part = (_first(following, text, position, start_line)
                         if isinstance(following, re.Pattern) else start_line)
            stop = min(corrupt, start_line, next_part)
            for match in FRAME_LINE.finditer(text, position, stop):
                frames += _frames_of(match, text, skip)
            if stop == size:
                position = size
            elif stop == corrupt:
                ok = False
            elif stop == next_part and next_part < start_line:
                match = _search(following, text, stop)  # type: ignore[arg-type]
                assert match is not None
                frames += _frames_of(match, text, skip)
                index += 1
            position = _line_end(text, stop) + 1
        else:
            assert isinstance(part, re.Pattern)
            corrupt = _corrupting_line(text, position, size, fault_injection)
            match = _search(part, text, position, corrupt)
            if match is None:
                ok &= corrupt == size
                position = size if corrupt == size else _line_end(text, corrupt) + 1
            else:
                frames += _frames_of(match, text, skip)
                position = _line_end(text, match.end()) + 1
        index += 1


@functools.lru_cache(maxsize=4096)
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
    """At most 120 printable characters, single-spaced."""
    if title.isascii() and title.isprintable() and "  " not in title:
        return title[:MAX_TITLE].strip()
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


def _stack_starts(text: str) -> list[int]:
    """Offsets of the lines that start a stack trace (each word found once, then checked)."""
    lines = {text.rfind("\n", 0, hit) + 1 for word in LEAD_WORDS[STACK_START]
             for hit in find_all(text, word)}
    return sorted(line for line in lines
                  if STACK_START.search(text, line, _line_end(text, line)))


def _has_stack(text: str) -> bool:
    """Every "Call Trace:"-like line is followed closely (about 15 lines) by a frame, before
    another trace starts, and there is one (in the report's first lines, its own traces)."""
    text = text[:STACK_CHECK_CHARS]
    starts = _stack_starts(text)
    for number, start in enumerate(starts):
        following = _line_end(text, start) + 1
        stop = following + 1500
        if number + 1 < len(starts):
            stop = min(stop, starts[number + 1])
        if text.count("\n", start, following + 1500) < 3:
            return False
        if not (FRAME_LINE.search(text, following, stop)
                or text.find("(stack is not available)", following, stop) >= 0):
            return False
    return bool(starts)


@functools.cache
def _spans_lines(pattern: re.Pattern[str]) -> bool:
    return "\\n" in pattern.pattern or "[\\s\\S]" in pattern.pattern or "\\s" in pattern.pattern


def title_report(group: Group, text: str) -> Titled:
    """The title of the report whose header (a line holding ``group.word``) starts ``text``."""
    first_line_end = _line_end(text, 0)
    for fmt in group.formats:
        match = fmt.header.search(text, 0, first_line_end)
        if match is None and _spans_lines(fmt.header):
            match = fmt.header.search(text)
            if match is not None and match.start() > first_line_end:
                match = None
        if match is None:
            continue
        if fmt.report is not None:
            match = fmt.report.search(text)
            if match is None:
                continue
        args: list[str] = [value or "" for value in match.groups()]
        guilty: RawFrame | None = None
        frames_ok = True
        if fmt.stack is not None:
            found, frames_ok = guilty_frames(fmt.stack, text[match.start():])
            args += [strip_syscall_prefix(frame.name) if frame else "corrupted"
                     for frame in found]
            guilty = next((frame for frame in found if frame), None)
        title = sanitise(normalise(fmt.fmt.format(*args)))
        corrupted = (fmt.corrupted or not frames_ok or bool(_GARBLED_TITLE.search(title))
                     or (not fmt.no_stack and not _has_stack(text)))
        return Titled(title, fmt, corrupted, guilty)
    # A header word but no row: the header line is the title, and the report is garbled.
    header = text[:first_line_end]
    header = header[header.find(group.word):] if group.word in header else header
    return Titled(sanitise(normalise(header)), None, True, None)
