"""Kernel log capture from ``/dev/kmsg``, by sequence number, without clearing anything.

A record is ``prio,seq,usec,flags[,...];text`` followed by continuation lines `` KEY=VALUE``;
non-printable bytes come escaped as ``\\xNN``. A test takes a cursor (the last seq) when it
starts and later sees exactly the records after it. A gap in the sequence numbers means the
ring buffer overwrote records before they were read: the count is reported, never hidden.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.errors import KernelFailure
from harness.oops.logtext import unescape
from harness.transport import CommandResult, Transport

LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# Every record readable now. A read past the last record fails with EAGAIN, which ends dd.
READ_COMMAND = "dd if=/dev/kmsg iflag=nonblock bs=65536 status=none 2>/dev/null; true"


@dataclass(frozen=True)
class KmsgRecord:
    seq: int
    level: int
    facility: int
    usec: int
    text: str
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    @property
    def seconds(self) -> float:
        return self.usec / 1e6

    def console_line(self) -> str:
        """The record as dmesg prints it: ``[   12.345678] text``."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


def parse_kmsg(data: str) -> list[KmsgRecord]:
    """Records from raw /dev/kmsg output; malformed lines are skipped."""
    records: list[KmsgRecord] = []
    properties: list[tuple[str, str]] = []
    current: tuple[int, int, int, int, str] | None = None

    def flush() -> None:
        if current is not None:
            prio, seq, usec, _, text = current
            records.append(KmsgRecord(seq, prio & 7, prio >> 3, usec, text, tuple(properties)))

    for line in data.split("\n"):
        if line.startswith(" ") and current is not None:
            key, _, value = line[1:].partition("=")
            properties.append((key, unescape(value)))
            continue
        header, sep, text = line.partition(";")
        if not sep:
            continue
        fields = header.split(",")
        try:
            prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
        except (ValueError, IndexError):
            continue
        flush()
        properties = []
        current = (prio, seq, usec, 0, unescape(text))
    flush()
    return records


class KernelLog:
    """Reads the guest's /dev/kmsg through a transport (``READ_COMMAND``, also sent by callers
    as a part of a larger command and handed back to :meth:`records_from`)."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.last_seq: int | None = None  # the newest record any read has seen

    def read(self) -> list[KmsgRecord]:
        return self.records_from(self.transport.run(READ_COMMAND, sudo=True, timeout=60))

    def records_from(self, result: CommandResult) -> list[KmsgRecord]:
        """The records of a ``READ_COMMAND`` run."""
        records = parse_kmsg(result.stdout)
        if records:
            self.last_seq = records[-1].seq
        return records

    def cursor(self) -> int:
        """The seq of the newest record: what a capture starting now has already seen."""
        records = self.read()
        return records[-1].seq if records else -1

    def capture(self, cursor: int | None = None, since_last_read: bool = False) -> Capture:
        """The records after ``cursor`` (default: from now on). ``since_last_read``: from the
        newest record read so far, without asking the guest (a step inside a test, whose lines
        since the last read are the test's anyway)."""
        if cursor is None and since_last_read and self.last_seq is not None:
            cursor = self.last_seq
        return Capture(self, self.cursor() if cursor is None else cursor)


class ExpectTimeout(KernelFailure):
    """``expect`` did not see its line; the message lists the lines that did come."""


@dataclass
class Capture:
    """The kernel records emitted after ``cursor``; refreshed from the guest on every read."""

    log: KernelLog | None
    cursor: int
    records: list[KmsgRecord] = field(default_factory=list)
    lost: int = 0  # records overwritten in the ring buffer before they could be read
    frozen: bool = False

    def refresh(self, read: CommandResult | None = None) -> Capture:
        """Add the records the guest has now (``read``: a ``READ_COMMAND`` result in hand)."""
        if self.frozen or self.log is None:
            return self
        last = self.records[-1].seq if self.records else self.cursor
        records = self.log.read() if read is None else self.log.records_from(read)
        fresh = [r for r in records if r.seq > last]
        if fresh and fresh[0].seq > last + 1:
            self.lost += fresh[0].seq - last - 1
        self.records.extend(fresh)
        return self

    def freeze(self) -> Capture:
        """Stop reading the guest (e.g. after the test, or when it died)."""
        self.frozen = True
        return self

    @property
    def lines(self) -> list[str]:
        """The text of each line, as ``dmesg`` shows them: a record holding newlines (one
        ``printk`` of several lines) gives several lines."""
        return [line for r in self.refresh().records for line in r.text.split("\n")]

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __contains__(self, text: object) -> bool:
        found = any(str(text) in line for line in self.lines)
        if not found:
            warn_if_regex_like(str(text))
        return found

    def __str__(self) -> str:
        return "\n".join(r.console_line() for r in self.refresh().records)

    def grep(self, pattern: str | re.Pattern[str], regex: bool = False) -> list[str]:
        """The lines containing ``pattern`` as plain text; a compiled ``re.Pattern`` (or
        ``regex=True``) is searched as a regular expression instead."""
        found = _matcher(pattern, regex)
        lines = Matches(line for line in self.lines if found(line))
        if not lines and isinstance(pattern, str) and not regex:
            lines.hint = warn_if_regex_like(pattern)
        return lines

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 10.0,
               regex: bool = False) -> str:
        """Wait up to ``timeout`` s for a line containing ``pattern`` (plain text, whatever
        characters it has; a compiled ``re.Pattern`` or ``regex=True`` means a regular
        expression); return the line, or fail listing the lines that did come."""
        found = _matcher(pattern, regex)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if found(line):
                    return line
            if time.monotonic() >= deadline or self.frozen:
                break
            time.sleep(0.5)
        came = "\n".join(f"  {line}" for line in self.lines[-40:]) or "  (no kernel lines at all)"
        how = "matched the regex" if isinstance(pattern, re.Pattern) or regex else "contained"
        text = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        hint = warn_if_regex_like(text) if how == "contained" else None
        raise ExpectTimeout(
            f"no kernel line {how} {text!r} within {timeout:g} s"
            + (f" ({hint})" if hint else "") + f"; the lines that did come:\n{came}"
        )


class LiteralPatternWarning(UserWarning):
    """A plain-text pattern that matched nothing holds regular-expression syntax: a test
    written when strings were regexes, now searched literally."""


# Syntax that means something only to a regex: escapes like \d, .* and .+, anchors.
_REGEX_ONLY = re.compile(r"\\[dDsSwWbB]|\.[*+]|^\^|(?<!\\)\$$")


def warn_if_regex_like(text: str) -> str | None:
    """When ``text`` (searched as plain text, and not found) holds regex-only syntax, warn and
    return what to do: since plain strings match literally, ``grep(r"birthday \\d+")`` from
    before that change would otherwise fail a test in silence."""
    if not _REGEX_ONLY.search(text):
        return None
    hint = (f"{text!r} was searched as plain text, and it holds regular-expression syntax: "
            f"for a regex write re.compile({text!r}) or pass regex=True")
    warnings.warn(LiteralPatternWarning(hint), stacklevel=3)
    return hint


class Matches(list):
    """The lines :meth:`Capture.grep` found; when none were and the pattern looked like a
    regex, its repr (what an assertion's failure shows) says so."""

    hint: str | None = None

    def __repr__(self) -> str:
        return super().__repr__() + (f"  # {self.hint}" if self.hint else "")


def _matcher(pattern: str | re.Pattern[str], regex: bool):
    if isinstance(pattern, re.Pattern):
        return lambda line: pattern.search(line) is not None
    if regex:
        compiled = re.compile(pattern)
        return lambda line: compiled.search(line) is not None
    return lambda line: pattern in line
