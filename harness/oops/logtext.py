"""Kernel log text of any origin turned into plain message lines.

Accepts dmesg output and serial console captures (``[   12.345678] `` prefixes, ``[  T123]`` /
``[ C1]`` caller ids, ``<N>`` levels, lines without a prefix, CR/LF from a serial port) and raw
``/dev/kmsg`` records (``prio,seq,usec,flags;text``). Each line keeps its number in the input so
reports can point back at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# /dev/kmsg escapes non-printable bytes (and backslash) as \xNN.
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_KMSG_RECORD = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_PREFIX = re.compile(
    r"^(?:<\d+>)?"  # syslog level
    r"(?:\[\s*\d+\.\d+\]\s?)?"  # timestamp
    r"(?:\[\s*(?P<context>[TC]\d+)\]\s?)?"  # caller id (CONFIG_PRINTK_CALLER)
)
# A timestamp after other text: a serial console interleaves a login prompt or user output.
_LATE_TIMESTAMP = re.compile(r"(?:<\d+>)?\[\s*\d+\.\d{6}\](?:\[\s*[TC]\d+\])?\s?")
# How a crash header begins, for one glued after another message's text.
_GLUED_HEADER = re.compile(r"BUG: |WARNING: |Kernel panic|general protection|Oops: |UBSAN: |"
                           r"Unable to handle|INFO: task ")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def unescape(text: str) -> str:
    """A /dev/kmsg record's text with its ``\\xNN`` escapes decoded."""
    return _KMSG_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


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


def parse_log(data: str | bytes) -> list[LogLine]:
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    data = _ANSI.sub("", data.replace("\r\n", "\n").replace("\r", "\n"))
    lines: list[LogLine] = []
    for number, raw in enumerate(data.split("\n"), start=1):
        if raw.startswith(" ") and lines and _KMSG_RECORD.match(lines[-1].raw):
            continue  # a /dev/kmsg continuation line (KEY=VALUE)
        record = _KMSG_RECORD.match(raw)
        if record:
            text, context = unescape(record.group(4)), None
        else:
            text, context = _split_prefix(raw)
        lines.append(LogLine(number, text.rstrip(), raw, context))
    return lines
