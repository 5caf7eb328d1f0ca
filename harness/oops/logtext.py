"""Kernel log text of any origin turned into plain message lines.

Accepts dmesg output and serial console captures (``[   12.345678] `` prefixes, ``[  T123]`` /
``[ C1]`` caller ids, ``<N>`` levels, lines without a prefix, CR/LF from a serial port), raw
``/dev/kmsg`` records (``prio,seq,usec,flags;text``), and the kernel's lines as the system logs
keep them (:data:`LOG_FORMATS`: ``journalctl -k``, ``/var/log/kern.log``, ``dmesg -T``,
``dmesg -x``). Each line keeps its number in the input so reports can point back at it.
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# What a system log puts before the kernel's own line (timestamp, level, caller id), one row a
# format: its name, and a regex of that prefix. The kernel's lines of journalctl and syslog
# files carry "HOST kernel: "; other programs' lines keep theirs, and so are no kernel message.
_MONTH_DAY_TIME = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
_ISO_TIME = (r"(?:[A-Z][a-z]{2} )?\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?"
             r"(?:Z| ?[+-]\d\d:?\d\d| [A-Z]{2,5})?")
LOG_FORMATS: tuple[tuple[str, str], ...] = (
    # journalctl -k (short), /var/log/kern.log and /var/log/messages (rsyslog's default)
    ("syslog", _MONTH_DAY_TIME + r" \S+ kernel: "),
    # journalctl -o short-iso / short-full / short-precise, rsyslog's RFC 3339 timestamps
    ("syslog-iso", _ISO_TIME + r" \S+ kernel: "),
    # journalctl -o short-monotonic
    ("journal-monotonic", r"\[[^\S\n]*\d+\.\d+\] \S+ kernel: "),
    # dmesg -T (human-readable time)
    ("dmesg-T", r"\[[A-Z][a-z]{2} " + _MONTH_DAY_TIME + r" \d{4}\] "),
    # dmesg -x (facility and level)
    ("dmesg-x", r"[a-z0-9]{3,8} *:[a-z]{3,6} *: "),
    # dmesg -H / -e: the minute once, then the time since the previous line
    ("dmesg-H", r"\[(?:[A-Z][a-z]{2}[ \d]?\d \d\d:\d\d|[^\S\n]*\+[^\S\n]*\d+\.\d+)\] "),
    # dmesg -d: the time and the time since the previous line
    ("dmesg-d", r"\[[^\S\n]*\d+\.\d+ <[^\S\n]*\d+\.\d+>\] "),
)
# Any of them: cheap to test a log's first lines with, and the optional outer part of a line.
_SYSTEM_PREFIX = "(?:" + "|".join(pattern for _, pattern in LOG_FORMATS) + ")"
_SNIFF_LINES = 5  # a pasted log may start with a prompt or a "-- Journal begins" line

# /dev/kmsg escapes non-printable bytes (and backslash) as \xNN.
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_KMSG_RECORD = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_PREFIX = re.compile(
    r"^" + _SYSTEM_PREFIX + "?"
    r"(?:<\d+>)?"  # syslog level
    r"(?:\[[^\S\n]*\d+\.\d+\][^\S\n]?)?"  # timestamp
    r"(?:\[[^\S\n]*(?P<context>[TC]\d+)\][^\S\n]?)?"  # caller id (CONFIG_PRINTK_CALLER)
)
# A timestamp after other text: a serial console interleaves a login prompt or user output.
_LATE_TIMESTAMP = re.compile(r"(?:<\d+>)?\[[^\S\n]*\d+\.\d{6}\](?:\[[^\S\n]*[TC]\d+\])?"
                             r"[^\S\n]?")
# How a crash header begins, for one glued after another message's text.
_GLUED_HEADER = re.compile(r"BUG: |WARNING: |Kernel panic|general protection|Oops: |UBSAN: |"
                           r"Unable to handle|INFO: task ")
_LINE_END_CRS = re.compile(r"\r+\n")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def find_all(text: str, word: str, start: int = 0, end: int | None = None) -> Iterator[int]:
    """Every offset of ``word`` in ``text[start:end]`` (a plain search: far faster than a
    regex over a whole log)."""
    end = len(text) if end is None else end
    position = text.find(word, start, end)
    while position >= 0:
        yield position
        position = text.find(word, position + 1, end)


def unescape(text: str) -> str:
    """A /dev/kmsg record's text with its ``\\xNN`` escapes decoded: the kernel escapes every
    byte outside printable ASCII, so the bytes are read back as UTF-8 (``\\xc3\\xa9`` is
    ``é``); a byte that is not UTF-8 stays written as ``\\xNN``. Control characters come back
    as themselves, for tests to match; :func:`harness.untrusted.visible` escapes them again
    wherever a line lands in a file."""
    if "\\x" not in text:
        return text
    raw = _KMSG_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8", errors="backslashreplace")
    except UnicodeEncodeError:  # not kmsg's own ASCII: characters beyond a byte were there
        return raw


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based line number in the input
    text: str  # the message, without timestamp, level or caller prefixes
    raw: str
    context: str | None = None  # the printing task or CPU ("T123", "C1"): CONFIG_PRINTK_CALLER


def strip_prefix(line: str) -> str:
    """The message of a console line. A timestamp further in starts a message of its own that
    the console glued to one printed without a newline: it is taken when nothing else is, or
    when it begins like a crash header."""
    return _split_prefix(line)[0]


def _split_prefix(line: str) -> tuple[str, str | None]:
    prefix = _PREFIX.match(line)
    context = prefix["context"] if prefix else None
    stripped = line[prefix.end():] if prefix else line
    if "[" not in stripped:
        return stripped, context
    late = _LATE_TIMESTAMP.search(stripped)
    if late is None:
        return stripped, context
    if len(stripped) == len(line) or _GLUED_HEADER.match(stripped, late.end()):
        return stripped[late.end():], context
    return stripped, context


@dataclass
class Log:
    """A whole log as parallel lists: one entry a line, plus the messages joined by newlines,
    so that searching for a pattern is one regex call over ``text``, not one a line."""

    texts: list[str]  # messages, prefixes stripped, trailing blanks removed
    source: str | list[str]  # the input: whole, or already split into its lines
    contexts: list[str | None] | None  # None when no line carries a caller id
    numbers: Sequence[int] | None  # line numbers in the input; None when they are index + 1
    records: bool = False  # /dev/kmsg records: one message a line, never glued by a console
    text: str = ""
    starts: list[int] = field(default_factory=list)  # offset of each line in ``text``

    def __post_init__(self) -> None:
        self.text = "\n".join(self.texts)
        self.starts = list(itertools.accumulate(map((1).__add__, map(len, self.texts[:-1])),
                                                initial=0))

    @functools.cached_property
    def raws(self) -> list[str]:
        """The input's lines as they were (split only when a caller wants one)."""
        return self.source if isinstance(self.source, list) else self.source.split("\n")

    @functools.cached_property
    def lines_by_context(self) -> dict[str | None, list[int]]:
        """The indices of each caller id's lines, in order (``None``: lines without one)."""
        by_context: dict[str | None, list[int]] = collections.defaultdict(list)
        for index, context in enumerate(self.contexts or ()):
            by_context[context].append(index)
        return dict(by_context)

    @functools.cached_property
    def cpu_contexts(self) -> list[str]:
        """The caller ids of CPUs (``C1``) that print in the log, as opposed to tasks."""
        return [context for context in self.lines_by_context
                if context and context.startswith("C")]

    def number(self, index: int) -> int:
        return self.numbers[index] if self.numbers is not None else index + 1

    def context(self, index: int) -> str | None:
        return self.contexts[index] if self.contexts is not None else None

    def line_at(self, offset: int) -> int:
        """The index of the line holding ``offset`` of ``text``."""
        return bisect.bisect_right(self.starts, offset) - 1

    def span(self, first: int, last: int) -> str:
        """Lines ``first`` to ``last`` (inclusive) of ``text``."""
        return self.text[slice(*self.bounds(first, last))]

    def bounds(self, first: int, last: int) -> tuple[int, int]:
        """Where :meth:`span` lies in ``text``: searched there, it is not copied out."""
        return self.starts[first], self.starts[last] + len(self.texts[last])

    def line(self, index: int) -> LogLine:
        return LogLine(self.number(index), self.texts[index], self.raws[index],
                       self.context(index))


# One match a line: its level, timestamp, caller id and message.
# Blanks in a prefix are never a newline: a line of a timestamp alone stays a line of its own.
_KERNEL_PREFIX = (r"(?:<\d+>)?(?:\[[^\S\n]*\d+\.\d+\][^\S\n]?)?"
                  r"(?:\[[^\S\n]*([TC]\d+)\][^\S\n]?)?(.*)$")
_CONSOLE_LINE = re.compile("^" + _KERNEL_PREFIX, re.MULTILINE)
# The same after a system log's prefix (tried only on a log whose first lines have one: the
# alternatives cost time on every line).
_SYSTEM_LINE = re.compile("^" + _SYSTEM_PREFIX + "?" + _KERNEL_PREFIX, re.MULTILINE)
# A system log's line, the kernel's or another program's ("HOST systemd[1]: ").
_SYSTEM_LINE_START = re.compile(f"{_SYSTEM_PREFIX}|(?:{_MONTH_DAY_TIME}|{_ISO_TIME}) \\S+ \\S+: ")
# A timestamp or caller id after the start of a line.
_LATE = re.compile(r".\[[^\S\n]*\d+\.\d{6}\]")


def _has_system_prefix(data: str) -> bool:
    """Whether one of the log's first lines is a system log's line."""
    head = data[:2048].split("\n", _SNIFF_LINES)[:_SNIFF_LINES]
    return any(_SYSTEM_LINE_START.match(line) for line in head)


def read_log(data: str | bytes) -> Log:
    text, numbers = plain_text(data)
    return parse(text, numbers, log_kind(text))


def plain_text(data: str | bytes) -> tuple[str, list[int] | None]:
    """The log decoded, its line ends made ``\n`` and its terminal codes removed; with the
    input's line number of each line when a lone CR (a redrawn line) made more lines."""
    text, numbers = split_lines(data)
    return without_codes(text), numbers


def split_lines(data: str | bytes) -> tuple[str, list[int] | None]:
    """:func:`plain_text` but for the terminal codes (which never span lines: a piece of the
    log can lose its own)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    numbers: list[int] | None = None
    if "\r" in data:
        # A serial console ends lines in CR LF, systemd's in CR CR LF. A CR alone (a progress
        # line redrawn) starts a line too, but keeps the line number an editor shows.
        data = _LINE_END_CRS.sub("\n", data)
        if "\r" in data:
            numbers = [number for number, line in enumerate(data.split("\n"), start=1)
                       for _ in range(line.count("\r") + 1)]
            data = data.replace("\r", "\n")
    return data, numbers


def without_codes(text: str) -> str:
    """``text`` without terminal escape codes (colours, cursor moves)."""
    return _ANSI.sub("", text) if "\x1b" in text else text


SNIFFED_LINES = _SNIFF_LINES  # what log_kind reads of a log


def log_kind(text: str) -> str:
    """How a log's lines are read, told by its first lines (:data:`SNIFFED_LINES`):
    ``kmsg`` records, a ``system`` log's lines (journalctl, syslog, dmesg's options) or
    ``console`` lines."""
    if _KMSG_RECORD.match(text[:text.find("\n") if "\n" in text else len(text)]):
        return "kmsg"
    return "system" if _has_system_prefix(text) else "console"


def parse(text: str, numbers: Sequence[int] | None, kind: str) -> Log:
    """A log from :func:`plain_text`'s text, each line read as ``kind`` says (for a piece of
    a larger log: the whole log's kind, and its numbers for the piece's lines)."""
    if kind == "kmsg":
        return _read_kmsg(text.split("\n"), numbers)
    pairs = (_SYSTEM_LINE if kind == "system" else _CONSOLE_LINE).findall(text)
    texts = [message.rstrip() for _, message in pairs]
    contexts: list[str | None] | None = None
    if "][" in text and any(context for context, _ in pairs):
        contexts = [context or None for context, _ in pairs]
    return Log(texts, text, contexts, numbers)


def unglue(log: Log, index: int) -> str:
    """Line ``index``'s message, taken from after a timestamp in its middle where the console
    glued it to another message (see :func:`strip_prefix`); stored back into ``log.texts``.
    Done for the lines that matter (report headers), not for every line of a log."""
    raw = log.raws[index]
    if _LATE.search(raw):
        log.texts[index] = _split_prefix(raw)[0].rstrip()
    return log.texts[index]


def _read_kmsg(raws: list[str], physical: Sequence[int] | None) -> Log:
    texts: list[str] = []
    kept: list[str] = []
    numbers: list[int] = []
    for index, raw in enumerate(raws):
        number = physical[index] if physical else index + 1
        if raw.startswith(" ") and kept and _KMSG_RECORD.match(kept[-1]):
            continue  # a /dev/kmsg continuation line (KEY=VALUE)
        record = _KMSG_RECORD.match(raw)
        text = unescape(record.group(4)) if record else _split_prefix(raw)[0]
        texts.append(text.rstrip())
        kept.append(raw)
        numbers.append(number)
    return Log(texts, kept, None, numbers, records=True)


def parse_log(data: str | bytes) -> list[LogLine]:
    log = read_log(data)
    return [log.line(index) for index in range(len(log.texts))]
