import subprocess
from pathlib import Path

from harness.taint import TAINT_COMMAND, decode, describe, new_failures


def test_out_of_tree_and_unsigned_are_not_failures_but_die_and_warn_are():
    before = 0
    after = (1 << 12) | (1 << 13) | (1 << 7) | (1 << 9)  # O, E, D, W
    assert [f.letter for f in decode(after)] == ["D", "W", "O", "E"]
    failures = new_failures(before, after)
    assert [f.letter for f in failures] == ["D", "W"]
    assert "D (kernel died recently" in describe(failures)


def test_only_newly_set_bits_count():
    assert new_failures(1 << 9, 1 << 9) == []
    assert [f.letter for f in new_failures(1 << 9, (1 << 9) | (1 << 14))] == ["L"]


def test_the_taint_read_gets_every_digit_from_a_sysctl_file_in_sh():
    # A sysctl file answers a read at a non-zero offset with end-of-file, and dash's `read`
    # reads a byte at a time: the command must not depend on the shell (a multi-digit file).
    sysctl = Path("/proc/sys/kernel/pid_max")
    command = TAINT_COMMAND.replace("/proc/sys/kernel/tainted", str(sysctl))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == sysctl.read_text().strip()
