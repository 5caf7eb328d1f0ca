"""The libvirt domain's snapshot revert: loaded into the running QEMU process when it can be,
libvirt's own revert (a new QEMU process) otherwise. virsh is scripted; the real one is used by
every vm test that restores a clean kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.hostexec import HostCommandError
from harness.libvirt import LibvirtDomain


class ScriptedDomain(LibvirtDomain):
    def __init__(self, tmp_path: Path, states: list[str], monitor_says: str = "",
                 monitor_fails: bool = False):
        (tmp_path / "id").write_text("uuid-1\n")
        super().__init__("qemu:///system", tmp_path / "id")
        self.states, self.monitor_says, self.monitor_fails = states, monitor_says, monitor_fails
        self.calls: list[tuple[str, ...]] = []

    def virsh(self, *args: str, timeout: float = 120.0) -> str:
        self.calls.append(args)
        if args[0] == "domstate":
            return self.states.pop(0) + "\n"
        if args[0] == "qemu-monitor-command":
            if self.monitor_fails:
                raise HostCommandError(["virsh", *args], 1, "error: operation not supported")
            return self.monitor_says
        return ""


def test_a_running_domain_loads_the_snapshot_in_place(tmp_path):
    domain = ScriptedDomain(tmp_path, ["running", "running"], monitor_says="\n")
    assert domain.revert("harness-clean") == "loadvm"
    assert ("qemu-monitor-command", "uuid-1", "--hmp", "loadvm harness-clean") in domain.calls
    assert not any(call[0] in ("snapshot-revert", "resume") for call in domain.calls)


def test_a_paused_domain_is_resumed_after_loading(tmp_path):
    domain = ScriptedDomain(tmp_path, ["paused", "paused"])
    assert domain.revert("harness-clean") == "loadvm"
    assert domain.calls[-1] == ("resume", "uuid-1")


def test_a_stopped_domain_is_started_paused_loads_the_snapshot_and_is_resumed(tmp_path):
    domain = ScriptedDomain(tmp_path, ["shut off", "paused"])
    assert domain.revert("harness-clean") == "start+loadvm"
    assert [call[0] for call in domain.calls] == [
        "domstate", "start", "qemu-monitor-command", "domstate", "resume"]
    assert domain.calls[1] == ("start", "--paused", "uuid-1")


@pytest.mark.parametrize(("states", "says", "fails"), [
    (["running"], "Error: Snapshot 'harness-clean' does not exist\n", False),
    (["running"], "", True),  # a libvirt that refuses the passthrough
    (["shut off"], "Error: Device 'x' not found\n", False),  # the new process refuses it
])
def test_otherwise_libvirts_revert_does_it(tmp_path, states, says, fails):
    domain = ScriptedDomain(tmp_path, states, monitor_says=says, monitor_fails=fails)
    assert domain.revert("harness-clean") == "snapshot-revert"
    assert domain.calls[-1] == ("snapshot-revert", "uuid-1", "harness-clean", "--running",
                                "--force")
    if states == ["shut off"]:  # the paused process that refused is stopped first
        assert ("destroy", "uuid-1") in domain.calls


def test_the_archive_holds_what_the_console_printed_since_the_last_restore(tmp_path):
    """loadvm keeps QEMU's console file: an archive starts where the last restore left it."""
    from harness.console import LocalSerialConsole, archive

    log = tmp_path / "serial.log"
    log.write_text("boot\nfirst test's panic\n")
    start = log.stat().st_size
    with log.open("a") as console:
        console.write("Kernel panic - not syncing: second\n")
    kept = archive(LocalSerialConsole(log), tmp_path / "kept.log", since=start)
    assert kept is not None and kept.read_text() == "Kernel panic - not syncing: second\n"
    assert archive(LocalSerialConsole(log), tmp_path / "none.log", since=log.stat().st_size) \
        is None


class _GrowingConsole:
    """A console that prints ``bursts`` more times, one each time its size is asked."""

    location = "fake"

    def __init__(self, bursts: int) -> None:
        self.bytes, self.bursts = 0, bursts

    def size(self) -> int:
        if self.bursts:
            self.bursts -= 1
            self.bytes += 100
        return self.bytes

    def read(self, offset: int = 0) -> str:
        return "x" * (self.bytes - offset)


def test_settle_waits_for_a_quiet_console_and_no_longer():
    from harness.console import settle

    # Quiet at once: one quiet period, not the limit.
    assert 0.1 <= settle(_GrowingConsole(0), quiet_s=0.1, limit_s=5, poll_s=0.02) < 1
    # Printing through four polls: the wait lasts past them.
    assert settle(_GrowingConsole(5), quiet_s=0.1, limit_s=5, poll_s=0.05) >= 0.3
    # Printing on and on: the limit ends the wait.
    assert settle(_GrowingConsole(10**6), quiet_s=0.1, limit_s=0.3, poll_s=0.02) < 1
