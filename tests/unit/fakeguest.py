"""A scripted guest for unit tests of the verdict, the clean-kernel fallbacks and the plugin:
the same HarnessSession/TestRun code as in a VM, with the kernel log, the taint mask, the serial
console and the VM's recovery steps played by a script."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from harness.errors import GuestUnreachable, VMError
from harness.guest import Guest
from harness.kmsg import READ_COMMAND
from harness.session import HarnessSession
from harness.transport import CommandResult, Transport

LOGS = Path(__file__).parent / "logs"


@dataclass
class ScriptedTransport(Transport):
    """Answers the commands a test run sends: /dev/kmsg, the taint mask, /proc/modules."""

    kmsg: list[str] = field(default_factory=list)  # console lines, as dmesg shows them
    taint: int = 0
    taint_fails: bool = False
    dead: bool = False
    commands: list[str] = field(default_factory=list)
    kmemleak: str | None = None  # /sys/kernel/debug/kmemleak after a scan; None: no kmemleak

    def log(self, *lines: str) -> None:
        self.kmsg.extend(lines)

    def run(self, command, *, timeout=60.0, sudo=False, stdin=None) -> CommandResult:
        text = command if isinstance(command, str) else " ".join(command)
        self.commands.append(text)
        if self.dead:
            raise GuestUnreachable(f"the connection to the guest died during `{text}`")
        if text == READ_COMMAND:
            records = "".join(f"6,{seq},{seq * 1000},-;{line.split('] ', 1)[-1]}\n"
                              for seq, line in enumerate(self.kmsg, start=1))
            return CommandResult(text, 0, records, "")
        if "kmemleak" in text:
            if self.kmemleak is None:
                return CommandResult(text, 1, "", "")
            return CommandResult(text, 0, self.kmemleak if "cat " in text else "", "")
        if "tainted" in text:
            if self.taint_fails:
                return CommandResult(text, 1, "", "cat: /proc/sys/kernel/tainted: I/O error")
            return CommandResult(text, 0, f"{self.taint}\n", "")
        return CommandResult(text, 0, "", "")

    def run_parts(self, parts, *, timeout=60.0, sudo=False):
        # Each part answered as the command it is (the real one sends them together).
        return {name: self.run(text, timeout=timeout, sudo=sudo) for name, text in parts.items()}

    def put_bytes(self, data, path, mode=0o644): ...
    def get_bytes(self, path): return b""
    def stat(self, path): return None
    def listdir(self, path): return []
    def mkdir(self, path): ...
    def remove(self, path): ...
    def rmdir(self, path): ...


@dataclass
class ScriptedConsole:
    """The serial console of a ScriptedVM: whatever the test appended to ``vm.serial``."""

    vm: ScriptedVM
    location: str = "scripted"

    def size(self) -> int:
        return len(self.vm.serial.encode())

    def read(self, offset: int = 0) -> str:
        return self.vm.serial.encode()[offset:].decode()


@dataclass
class ScriptedVM:
    """The VM's part: the serial console and the three ways back to a clean kernel."""

    state: Path
    settings: object = field(default_factory=lambda: SimpleNamespace(
        isolate_network=False, box=SimpleNamespace(name="debian-12", recipe=None)))
    serial: str = ""
    failing: set[str] = field(default_factory=set)  # "revert", "reboot", "new VM"
    steps: list[str] = field(default_factory=list)

    @property
    def console(self) -> ScriptedConsole:
        return ScriptedConsole(self)

    def serial_archive_path(self, name: str) -> Path:
        return self.state / "serial" / f"{name}.log"

    def _step(self, name: str) -> float:
        self.steps.append(name)
        if name in self.failing:
            raise VMError(f"{name} failed")
        return 1.0

    def restore_snapshot(self, archive_as: str | None = None) -> float:
        return self._step("revert")

    def reboot(self) -> float:
        return self._step("reboot")

    def save_snapshot(self) -> None:
        self.steps.append("snapshot")

    def transport(self) -> SimpleNamespace:
        return SimpleNamespace(run=lambda script, **_: SimpleNamespace(ok=True))

    def destroy(self) -> None:
        self.steps.append("destroy")

    def up(self) -> None:
        self._step("new VM")

    def wait_for_ssh(self) -> None:
        self.steps.append("ssh")

    def close(self) -> None:
        self.steps.append("close")

    def power_off(self) -> None:
        self.steps.append("power off")


def scripted_session(tmp_path: Path) -> tuple[HarnessSession, ScriptedTransport, ScriptedVM]:
    transport = ScriptedTransport()
    vm = ScriptedVM(tmp_path)
    guest = Guest(transport, tmp_path / "cache")
    return HarnessSession(vm, guest), transport, vm  # type: ignore[arg-type]


def console(name: str) -> list[str]:
    """A kernel log captured from the real guest (tests/unit/logs)."""
    return (LOGS / f"{name}.console").read_text().splitlines()
