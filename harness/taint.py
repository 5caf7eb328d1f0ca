"""The kernel's taint flags: read them, and say which newly set ones mean trouble.

``/proc/sys/kernel/tainted`` is a bit mask; each bit has a letter and a meaning. Loading an
out-of-tree (O) or unsigned (E) module taints the kernel on purpose and is no failure; a die
(D), a warning (W), a soft lockup (L) or a bad page (B) is.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.transport import CommandResult


@dataclass(frozen=True)
class TaintFlag:
    bit: int
    letter: str
    meaning: str
    is_failure: bool


TAINT_FLAGS: tuple[TaintFlag, ...] = (
    TaintFlag(0, "P", "proprietary module loaded", False),
    TaintFlag(1, "F", "module force loaded", False),
    TaintFlag(2, "S", "kernel running on an out-of-spec system", False),
    TaintFlag(3, "R", "module force unloaded", True),
    TaintFlag(4, "M", "processor reported a machine check exception", True),
    TaintFlag(5, "B", "bad page referenced or unexpected page flags", True),
    TaintFlag(6, "U", "taint requested by userspace", False),
    TaintFlag(7, "D", "kernel died recently (an oops or BUG)", True),
    TaintFlag(8, "A", "ACPI table overridden", False),
    TaintFlag(9, "W", "kernel issued a warning", True),
    TaintFlag(10, "C", "staging driver loaded", False),
    TaintFlag(11, "I", "workaround for a platform firmware bug", False),
    TaintFlag(12, "O", "externally-built (out-of-tree) module loaded", False),
    TaintFlag(13, "E", "unsigned module loaded", False),
    TaintFlag(14, "L", "soft lockup occurred", True),
    TaintFlag(15, "K", "kernel live patched", False),
    TaintFlag(16, "X", "auxiliary taint (distribution defined)", False),
    TaintFlag(17, "T", "kernel built with the struct randomization plugin", False),
    TaintFlag(18, "N", "an in-kernel test has been run", False),
)


def decode(mask: int) -> list[TaintFlag]:
    return [flag for flag in TAINT_FLAGS if mask & (1 << flag.bit)]


def new_failures(before: int, after: int) -> list[TaintFlag]:
    """Flags set in ``after`` but not ``before`` that mean the kernel went wrong."""
    return [flag for flag in decode(after & ~before) if flag.is_failure]


def describe(flags: list[TaintFlag]) -> str:
    return ", ".join(f"{f.letter} ({f.meaning})" for f in flags)


# Not the shell's `read`: dash reads a byte at a time, and a sysctl file answers a read at a
# non-zero offset with end-of-file (dash saw "1" of "12288", and failed).
TAINT_COMMAND = "cat /proc/sys/kernel/tainted"


def parse_taint(result: CommandResult) -> int:
    """The mask a ``TAINT_COMMAND`` run printed (``CommandFailed`` when it could not)."""
    return int(result.check().stdout.strip())
