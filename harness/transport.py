"""Places to run commands: one small interface, SSH (paramiko) for the guest, local for tests.

Everything above this module speaks only to :class:`Transport`: ``run`` a command (an argv
list is quoted, never interpolated into a shell) with a timeout, and move files with SFTP-like
calls. A lost connection raises :class:`GuestUnreachable`, which callers read as "the guest may
have died" and check the serial console.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from harness.errors import CommandFailed, CommandTimeout, GuestUnreachable

Command = str | Sequence[str]


@dataclass
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self, *expected: int) -> CommandResult:
        """This result, or :class:`CommandFailed` when the exit status is not one of
        ``expected`` (default: 0)."""
        if self.exit_status not in (expected or (0,)):
            raise CommandFailed(self, expected or (0,))
        return self


@dataclass(frozen=True)
class RemoteStat:
    size: int
    mtime: int
    mode: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def to_shell(command: Command, sudo: bool = False) -> str:
    text = command if isinstance(command, str) else shlex.join(list(command))
    if sudo:
        text = "sudo -n sh -c " + shlex.quote(text)
    return text


EOF_GRACE_S = 2.0  # how long output may trail a command's exit status
_PART = "@harness-part:"  # starts the lines that separate the parts of a run_parts command


def _split_parts(text: str) -> dict[str, tuple[str, int | None]]:
    """``run_parts`` output: each part's text and exit status (None: it never finished)."""
    found: dict[str, tuple[str, int | None]] = {}
    for chunk in text.split(_PART)[1:]:
        name, _, body = chunk.partition("\n")
        if name.isdigit() and found:  # the status line closing the previous part
            last = next(reversed(found))
            found[last] = (found[last][0], int(name))
            continue
        # A part's output gets one newline added before its status line: take it off.
        found[name] = (body[:-1] if body.endswith("\n") else body, None)
    return found


class Transport(ABC):
    """A place to run commands and keep files."""

    @abstractmethod
    def run(self, command: Command, *, timeout: float = 60.0, sudo: bool = False,
            stdin: str | None = None) -> CommandResult: ...

    @abstractmethod
    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None: ...

    @abstractmethod
    def get_bytes(self, path: str) -> bytes: ...

    @abstractmethod
    def stat(self, path: str) -> RemoteStat | None: ...

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def mkdir(self, path: str) -> None: ...

    @abstractmethod
    def remove(self, path: str) -> None: ...

    @abstractmethod
    def rmdir(self, path: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release the connection (reconnecting is allowed afterwards)."""

    def run_parts(self, parts: dict[str, str], *, timeout: float = 60.0, sudo: bool = False
                  ) -> dict[str, CommandResult]:
        """Several shell scripts in one command (one round trip: about 0.2 s each under
        emulation), each with its own output and exit status. They share one shell (a subshell
        each would cost a fork): a part must not ``exit`` or ``set -e``."""
        script = "\n".join(
            f"echo {_PART}{name}; echo {_PART}{name} >&2\n{{ {text}\n}}\n"
            f"status=$?; echo; echo {_PART}$status; echo >&2" for name, text in parts.items())
        whole = self.run(script, timeout=timeout, sudo=sudo)
        outs, errs = _split_parts(whole.stdout), _split_parts(whole.stderr)
        results = {}
        for name, text in parts.items():
            stdout, status = outs.get(name, ("", None))
            status = status if status is not None else whole.exit_status or 1
            results[name] = CommandResult(text, status, stdout, errs.get(name, ("", None))[0],
                                          whole.seconds)
        return results

    def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        current = "" if path.startswith("/") else "."
        for part in parts:
            current = f"{current}/{part}"
            if self.stat(current) is None:
                self.mkdir(current)


@dataclass
class SSHTarget:
    host: str
    port: int
    user: str
    key_file: str
    proxy_command: str | None = None  # OpenSSH ProxyCommand, e.g. through a remote libvirt host


class DeathWatch(ABC):
    """Tells a waiting transport that the guest died (e.g. its console shows a panic)."""

    @abstractmethod
    def mark(self) -> int: ...

    @abstractmethod
    def died_since(self, mark: int) -> str | None: ...


@dataclass
class SSHTransport(Transport):
    """The guest over SSH, with paramiko. Reconnects lazily after a snapshot revert."""

    target: SSHTarget
    connect_timeout: float = 20.0
    death_watch: DeathWatch | None = None
    death_check_interval: float = 2.0
    # Commands run as root go over a root login when the guest allows one (the harness's own
    # boxes do): `sudo` costs about 0.4 s a call under emulation. None: not tried yet;
    # HARNESS_ROOT_LOGIN=no keeps sudo (the benchmark compares both).
    root_login: bool | None = field(
        default_factory=lambda: False if os.environ.get("HARNESS_ROOT_LOGIN") == "no" else None)
    _clients: dict[str, paramiko.SSHClient] = field(default_factory=dict, init=False, repr=False)
    _sftp: paramiko.SFTPClient | None = field(default=None, init=False, repr=False)

    def client(self, user: str | None = None) -> paramiko.SSHClient:
        user = user or self.target.user
        existing = self._clients.get(user)
        if existing is not None:
            transport = existing.get_transport()
            if transport is not None and transport.is_active():
                return existing
            self.close()
        self._clients[user] = self._connect(user)
        return self._clients[user]

    def dial(self) -> None:
        """Open the login user's connection and root's (when the guest allows root logins) at
        the same time: each costs about a second under emulation, most of it the guest's, which
        has a CPU for each. After a revert, a test needs both (files go over the user's SFTP,
        commands run as root)."""
        users = [self.target.user] + ([ROOT] if self.root_login is not False else [])
        users = [u for u in users if u not in self._clients]
        if not users:
            return
        with ThreadPoolExecutor(len(users)) as pool:
            dialled = list(pool.map(self._dial_attempt, users))
        for user, outcome in zip(users, dialled, strict=True):
            if isinstance(outcome, paramiko.SSHClient):
                self._clients[user] = outcome
            elif isinstance(outcome, _LoginRefused):
                self.root_login = False  # a box without it: sudo from now on
        failed = [e for e in dialled if isinstance(e, GuestUnreachable)]
        if failed:
            raise failed[0]

    def _dial_attempt(self, user: str) -> paramiko.SSHClient | Exception:
        try:
            return self._connect(user)
        except (GuestUnreachable, _LoginRefused) as err:
            return err

    def _connect(self, user: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            proxy = paramiko.ProxyCommand(self.target.proxy_command) \
                if self.target.proxy_command else None
            client.connect(
                self.target.host, port=self.target.port, username=user,
                key_filename=self.target.key_file, sock=proxy, timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
                allow_agent=False, look_for_keys=False,
            )
        except paramiko.AuthenticationException as err:
            client.close()
            if user != self.target.user:
                raise _LoginRefused(user) from err
            raise GuestUnreachable(
                f"the guest at {self.target.host}:{self.target.port} refused {user}'s key: {err}"
            ) from err
        except (OSError, paramiko.SSHException) as err:
            client.close()
            raise GuestUnreachable(
                f"cannot reach the guest at {self.target.host}:{self.target.port}: {err}"
            ) from err
        client.get_transport().set_keepalive(5)  # type: ignore[union-attr]
        return client

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or self._sftp.get_channel().closed:  # type: ignore[union-attr]
            try:
                self._sftp = self.client().open_sftp()
            except (OSError, paramiko.SSHException) as err:
                raise GuestUnreachable(f"SFTP to the guest failed: {err}") from err
        return self._sftp

    def close(self) -> None:
        for thing in (self._sftp, *self._clients.values()):
            if thing is not None:
                # Closing a dead connection may raise anything.
                with contextlib.suppress(Exception):
                    thing.close()
        self._sftp = None
        self._clients = {}

    def run(self, command: Command, *, timeout: float = 60.0, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        text = to_shell(command, sudo)
        started = time.monotonic()
        watch_mark = self.death_watch.mark() if self.death_watch else 0
        channel = None
        if sudo and self.root_login is not False:
            try:
                channel = self._open_channel(to_shell(command), stdin, ROOT)
                self.root_login = True
            except _LoginRefused:
                self.root_login = False  # a box without it: sudo from now on
        channel = channel or self._open_channel(text, stdin)
        out, err_buf = io.BytesIO(), io.BytesIO()
        deadline = started + timeout
        next_death_check = started + self.death_check_interval
        exited: float | None = None  # when the exit status was first seen
        try:
            while True:
                progressed = False
                while channel.recv_ready():
                    out.write(channel.recv(65536))
                    progressed = True
                while channel.recv_stderr_ready():
                    err_buf.write(channel.recv_stderr(65536))
                    progressed = True
                if channel.exit_status_ready() and not channel.recv_ready() \
                        and not channel.recv_stderr_ready():
                    # sshd may send the exit status before the last of the output (seen on a
                    # loaded host: a command's last lines missing); the output is whole at
                    # EOF. A command that left a process holding its output open never
                    # sends EOF: the wait for it is bounded.
                    exited = exited or time.monotonic()
                    if channel.eof_received or time.monotonic() > exited + EOF_GRACE_S:
                        break
                if time.monotonic() > deadline:
                    channel.close()
                    raise CommandTimeout(text, timeout, _text(out), _text(err_buf))
                if not channel.get_transport().is_active():
                    raise GuestUnreachable(f"the connection to the guest died during `{text}`")
                if self.death_watch and time.monotonic() > next_death_check:
                    next_death_check = time.monotonic() + self.death_check_interval
                    reason = self.death_watch.died_since(watch_mark)
                    if reason:
                        self.close()
                        raise GuestUnreachable(f"the guest died during `{text}`: {reason}")
                if not progressed:
                    time.sleep(0.02)
            status = channel.recv_exit_status()
        except (TimeoutError, OSError, paramiko.SSHException, EOFError) as err:
            self.close()
            raise GuestUnreachable(f"lost the connection to the guest during `{text}`: {err}") \
                from err
        finally:
            channel.close()
        return CommandResult(text, status, _text(out), _text(err_buf),
                             round(time.monotonic() - started, 3))

    def _open_channel(self, text: str, stdin: str | None,
                      user: str | None = None) -> paramiko.Channel:
        """Start a command; a stale connection (e.g. after a snapshot revert) is redialled once."""
        for attempt in (1, 2):
            try:
                # Bounded: a guest whose CPUs are stuck never answers the channel request.
                channel = self.client(user).get_transport().open_session(  # type: ignore[union-attr]
                    timeout=self.connect_timeout)
                channel.settimeout(1.0)
                channel.exec_command(text)
                if stdin is not None:
                    channel.sendall(stdin.encode())
                channel.shutdown_write()
                return channel
            except (OSError, paramiko.SSHException, EOFError) as err:
                self.close()
                if attempt == 2:
                    raise GuestUnreachable(
                        f"lost the connection to the guest running `{text}`: {err}") from err
        raise AssertionError("unreachable")

    def _sftp_call(self, what: str, func, *args):
        try:
            return func(*args)
        except (OSError, paramiko.SSHException, EOFError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            if isinstance(err, OSError) and err.errno is not None:
                raise
            self.close()
            raise GuestUnreachable(f"SFTP {what} failed: {err}") from err

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        def put() -> None:
            with self.sftp().open(path, "wb") as handle:
                handle.set_pipelined(True)
                handle.write(data)
            self.sftp().chmod(path, mode)
        self._sftp_call(f"write {path}", put)

    def get_bytes(self, path: str) -> bytes:
        def get() -> bytes:
            with self.sftp().open(path, "rb") as handle:
                handle.prefetch()
                return handle.read()
        return self._sftp_call(f"read {path}", get)

    def stat(self, path: str) -> RemoteStat | None:
        try:
            attrs = self._sftp_call(f"stat {path}", self.sftp().stat, path)
        except FileNotFoundError:
            return None
        return RemoteStat(attrs.st_size or 0, attrs.st_mtime or 0, attrs.st_mode or 0)

    def listdir(self, path: str) -> list[str]:
        return self._sftp_call(f"list {path}", self.sftp().listdir, path)

    def mkdir(self, path: str) -> None:
        self._sftp_call(f"mkdir {path}", self.sftp().mkdir, path)

    def remove(self, path: str) -> None:
        self._sftp_call(f"remove {path}", self.sftp().remove, path)

    def rmdir(self, path: str) -> None:
        self._sftp_call(f"rmdir {path}", self.sftp().rmdir, path)


ROOT = "root"


class _LoginRefused(Exception):
    """The guest refused a login as this user (the caller falls back to sudo)."""


def _text(buf: io.BytesIO) -> str:
    return buf.getvalue().decode("utf-8", errors="replace")


@dataclass
class LocalTransport(Transport):
    """Runs on this machine under ``root`` (a folder standing in for the guest's /).

    For unit tests of everything above the transport; ``sudo`` is ignored.
    """

    root: Path
    commands: list[str] = field(default_factory=list)

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def run(self, command: Command, *, timeout: float = 60.0, sudo: bool = False,
            stdin: str | None = None) -> CommandResult:
        text = to_shell(command)
        self.commands.append(text)
        started = time.monotonic()
        try:
            proc = subprocess.run(["sh", "-c", text], cwd=self.root, input=stdin, text=True,
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise CommandTimeout(text, timeout, str(err.stdout or ""), str(err.stderr or "")) \
                from err
        return CommandResult(text, proc.returncode, proc.stdout, proc.stderr,
                             round(time.monotonic() - started, 3))

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        target = self._path(path)
        target.write_bytes(data)
        os.chmod(target, mode)

    def get_bytes(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def stat(self, path: str) -> RemoteStat | None:
        try:
            st = self._path(path).stat()
        except FileNotFoundError:
            return None
        return RemoteStat(st.st_size, int(st.st_mtime), st.st_mode)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self._path(path))

    def mkdir(self, path: str) -> None:
        self._path(path).mkdir()

    def remove(self, path: str) -> None:
        self._path(path).unlink()

    def rmdir(self, path: str) -> None:
        self._path(path).rmdir()
