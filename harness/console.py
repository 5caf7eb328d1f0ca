"""The guest's serial console, as the file QEMU writes it: read from an offset, its size, and
panic detection from it, and the archive of what it printed during each test.

A panicked kernel stops answering SSH without closing it; what it printed last is only on the
serial console. QEMU writes that file on the libvirt host: this machine
(:class:`LocalSerialConsole`) or a remote libvirt host read over SFTP
(:class:`RemoteSerialConsole`). Both have the same interface, :class:`SerialConsole`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from harness.transport import DeathWatch, SSHTarget, SSHTransport

PANIC_MARKERS = ("Kernel panic - not syncing", "---[ end Kernel panic")


class SerialConsole(Protocol):
    location: str  # where QEMU writes it, for messages and the Vagrantfile

    def size(self) -> int: ...

    def read(self, offset: int = 0) -> str:
        """The console from byte ``offset`` ("" when there is none yet)."""
        ...


@dataclass
class LocalSerialConsole:
    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0) -> str:
        try:
            with open(self.path, "rb") as log:
                return _read_from(log, offset)
        except FileNotFoundError:
            return ""


@dataclass
class RemoteSerialConsole:
    """The console file on a remote libvirt host, over the SSH connection ``host()`` gives."""

    location: str
    host: Callable[[], SSHTransport]

    @classmethod
    def over_ssh(cls, location: str, host: str, user: str,
                 key_file: str | None) -> RemoteSerialConsole:
        """Read over SSH to the libvirt host (the user and key libvirt's own connection uses),
        connected on first use."""
        return cls(location, functools.cache(
            lambda: SSHTransport(SSHTarget(host, 22, user, key_file or ""))))

    def size(self) -> int:
        try:
            return self.host().sftp().stat(self.location).st_size or 0
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0) -> str:
        try:
            with self.host().sftp().open(self.location, "rb") as log:
                return _read_from(log, offset)
        except FileNotFoundError:
            return ""


def settle(console: SerialConsole, quiet_s: float = 1.0, limit_s: float = 5.0,
           poll_s: float = 0.25) -> float:
    """Wait until the console has printed nothing for ``quiet_s`` (a dying kernel's last
    report is written out), at most ``limit_s``; the seconds waited."""
    started = time.monotonic()
    size, changed = console.size(), started
    while True:
        now = time.monotonic()
        if now - changed >= quiet_s or now - started >= limit_s:
            return now - started
        time.sleep(poll_s)
        current = console.size()
        if current != size:
            size, changed = current, time.monotonic()


def _read_from(log: IO[bytes], offset: int) -> str:
    log.seek(offset)
    return log.read().decode(errors="replace")


@dataclass
class SerialArchive:
    """The console's text since the last boot or restore, copied aside under a name (a test id)
    into ``folder`` before the next restore empties or continues the file."""

    console: SerialConsole
    folder: Path
    since: int = 0  # where the console's text since the last boot or restore begins

    def path(self, name: str) -> Path:
        return self.folder / f"{_safe_name(name)}.log"

    def save(self, name: str | None) -> Path | None:
        """Copy what the console printed since the last restore (or boot) aside as
        ``NAME.log``, when it printed anything."""
        if not name:
            return None
        return archive(self.console, self.path(name), since=self.since)

    def restart(self, continued: bool) -> None:
        """A boot or restore happened: the text to keep starts at the file's end when QEMU's
        process (and its file) continued, else at its start (a new process empties it)."""
        self.since = self.console.size() if continued else 0


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]


def archive(console: SerialConsole, target: Path, since: int = 0) -> Path | None:
    """Copy what the console holds from byte ``since`` to ``target`` (nothing when that is
    empty)."""
    text = console.read(since)
    if not text:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@dataclass
class SerialPanicWatch(DeathWatch):
    """A panic stops the guest without closing SSH; its serial console is what shows it."""

    console: SerialConsole

    def mark(self) -> int:
        return self.console.size()

    def died_since(self, mark: int) -> str | None:
        for line in self.console.read(mark).splitlines():
            if PANIC_MARKERS[0] in line:
                return "the serial console shows " + line.strip()[line.find("Kernel"):]
        return None
