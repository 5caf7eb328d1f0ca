"""A booted guest as a test sees it: commands, files, user-space programs, the kernel log.

Commands run as the guest's login user (``vagrant``); ``sudo=True`` runs them as root. Three
ways to run one, as pytest-testinfra has them: :meth:`Guest.run` returns a
:class:`~harness.transport.CommandResult` whatever the exit status; :meth:`Guest.check_output`
returns stdout and :meth:`Guest.run_expect` the result, both raising
:class:`~harness.errors.CommandFailed` (command, user, exit status, stderr, stdout) otherwise.
Files move with SFTP (:meth:`put`, :meth:`get`, :meth:`read_text`, :meth:`write_text`); a
user-space program (a test client for an ioctl, say) is compiled in the guest with its own gcc
and headers by :meth:`program`. Module builds (``builder``) and the kernel log (``kernel_log``)
hang off the same object, so the pytest fixtures, the CLI and the grader share one guest.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import posixpath
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.boxes import version_tuple
from harness.build import Builder, parse_diagnostics
from harness.errors import BuildError, CommandFailed, ConfigurationError
from harness.hostbuild import RootfsBuilder
from harness.kmsg import KernelLog
from harness.sync import sync_tree
from harness.transport import Command, CommandResult, Transport

LOGIN_USER = "vagrant"
DEFAULT_TIMEOUT_S = 60.0
PROGRAM_BUILD_TIMEOUT_S = 300.0


class ProgramBuildError(BuildError):
    """A user-space program did not compile; the message starts with gcc's errors."""

    def __init__(self, name: str, result: CommandResult, sources: list[Path]):
        self.result = result
        log = result.stdout + result.stderr
        # gcc ran in the program's guest folder and names its files as given: by name.
        by_name = {source.name: str(source) for source in sources}
        self.diagnostics = [dataclasses.replace(d, file=by_name.get(d.file or "", d.file))
                            for d in parse_diagnostics(log)]
        errors = [str(d) for d in self.diagnostics if d.severity == "error"]
        shown = errors or log.strip().splitlines()[-15:]
        super().__init__(f"building the program {name} failed (gcc exited "
                         f"{result.exit_status}):\n" + "\n".join(shown))


@dataclass(frozen=True)
class HostPaths:
    """How a test's relative host paths are read: from the test file's folder; a path not
    found there is looked up from ``fallback`` (pytest's rootdir), as older tests wrote them."""

    base: Path
    fallback: Path | None = None

    def resolve(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_absolute():
            return path
        first = self.base / path
        if first.exists() or self.fallback is None:
            return first
        second = self.fallback / path
        if second.exists():
            return second
        raise ConfigurationError(
            f"{path} was not found relative to the test file ({first}) nor to pytest's "
            f"rootdir ({second}); write it relative to the test file")


@dataclass
class Program:
    """A user-space program compiled in the guest; ``path`` is where it lies there."""

    guest: Guest
    name: str
    path: str

    def command(self, args: Sequence[object]) -> list[str]:
        return [self.path, *(str(a) for a in args)]

    def run(self, *args: object, sudo: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
            stdin: str | None = None) -> CommandResult:
        """Run it with ``args`` (each one argv word, never parsed by a shell)."""
        return self.guest.run(self.command(args), sudo=sudo, timeout=timeout, stdin=stdin)

    def check_output(self, *args: object, sudo: bool = False,
                     timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None) -> str:
        __tracebackhide__ = True
        return self.guest.check_output(self.command(args), sudo=sudo, timeout=timeout,
                                       stdin=stdin)


@dataclass
class Guest:
    """One booted guest: commands, files, programs, module builds and the kernel log."""

    transport: Transport
    build_cache: Path
    remote_base: str = "/tmp/harness"
    headers_hint: str = "install the kernel headers package for $(uname -r)"
    build_mode: str = "auto"  # auto | host | guest (see harness.build.Builder)
    host_builder: RootfsBuilder | None = None
    user: str = LOGIN_USER
    paths: HostPaths | None = None  # set on a test's view: relative host paths start there
    _programs: dict[str, Program] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.kernel_log = KernelLog(self.transport)
        self.builder = Builder(self.transport, self.build_cache, self.headers_hint,
                               mode=self.build_mode, host=self.host_builder)

    def __repr__(self) -> str:
        target = getattr(self.transport, "target", None)
        where = f"{target.user}@{target.host}" if target else type(self.transport).__name__
        return f"<Guest {where}>"

    def for_test(self, paths: HostPaths) -> Guest:
        """The same guest (one connection, builder and kernel log), reading relative host
        paths as ``paths`` says."""
        view = copy.copy(self)
        view.paths = paths
        return view

    def host_path(self, path: str | Path) -> Path:
        return self.paths.resolve(path) if self.paths else Path(path)

    # -- commands ---------------------------------------------------------------------------------
    def run(self, command: Command, *, sudo: bool = False, timeout: float = DEFAULT_TIMEOUT_S,
            stdin: str | None = None) -> CommandResult:
        """Run ``command`` (a shell string, or an argv list that is quoted word by word) and
        return its result, whatever its exit status. A command that does not finish within
        ``timeout`` seconds raises :class:`~harness.errors.CommandTimeout`."""
        return self.transport.run(command, sudo=sudo, timeout=timeout, stdin=stdin)

    def run_expect(self, expected: Iterable[int], command: Command, *, sudo: bool = False,
                   timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None
                   ) -> CommandResult:
        """Like :meth:`run`, but an exit status not in ``expected`` raises CommandFailed."""
        __tracebackhide__ = True  # pytest shows the test's line, not this one
        want = tuple(expected)
        result = self.run(command, sudo=sudo, timeout=timeout, stdin=stdin)
        if result.exit_status not in want:
            raise CommandFailed(result, want, self._as_whom(sudo))
        return result

    def check_output(self, command: Command, *, sudo: bool = False,
                     timeout: float = DEFAULT_TIMEOUT_S, stdin: str | None = None) -> str:
        """stdout of a command that must succeed, without its final newline."""
        __tracebackhide__ = True
        result = self.run_expect((0,), command, sudo=sudo, timeout=timeout, stdin=stdin)
        return result.stdout.removesuffix("\n")

    def _as_whom(self, sudo: bool) -> str:
        return "root" if sudo else self.user

    # -- files ------------------------------------------------------------------------------------
    def put(self, local: str | Path, remote: str | None = None, *, mode: int | None = None,
            sudo: bool = False) -> str:
        """Copy a host file or folder into the guest; returns its guest path.

        ``remote`` defaults to ``/tmp/harness/files/NAME``. A folder is copied whole (only
        changed files are sent again). ``sudo=True`` puts a file where only root may write
        (``/etc/...``): it is uploaded, then installed by root with ``mode``.
        """
        source = self.host_path(local)
        if not source.exists():
            raise ConfigurationError(f"cannot copy {source} into the guest: it does not exist")
        target = remote or posixpath.join(self.remote_base, "files", source.name)
        if source.is_dir():
            if sudo:
                raise ConfigurationError("put(sudo=True) takes a file, not a folder")
            sync_tree(self.transport, source, target)
            return target
        data = source.read_bytes()
        file_mode = mode if mode is not None else (source.stat().st_mode & 0o777)
        self.write_bytes(target, data, mode=file_mode, sudo=sudo)
        return target

    def get(self, remote: str, local: str | Path, *, sudo: bool = False) -> Path:
        """Copy a guest file to the host; returns the host path."""
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read_bytes(remote, sudo=sudo))
        return target

    def read_bytes(self, path: str, *, sudo: bool = False) -> bytes:
        """A guest file's content. ``sudo=True`` reads files only root may read; a missing or
        unreadable file raises CommandFailed (or FileNotFoundError without sudo)."""
        if sudo:
            result = self.run_expect((0,), ["base64", "-w0", path], sudo=True, timeout=120)
            return base64.b64decode(result.stdout)
        return self.transport.get_bytes(path)

    def read_text(self, path: str, *, sudo: bool = False) -> str:
        return self.read_bytes(path, sudo=sudo).decode("utf-8", errors="replace")

    def write_bytes(self, path: str, data: bytes, *, mode: int = 0o644,
                    sudo: bool = False) -> None:
        """Write a guest file (its folder is created). ``sudo=True``: written by root."""
        folder = posixpath.dirname(path) or "."
        if not sudo:
            self.transport.makedirs(folder)
            self.transport.put_bytes(data, path, mode)
            return
        staging = posixpath.join(self.remote_base, "staging",
                                 hashlib.sha256(path.encode()).hexdigest()[:12])
        self.transport.makedirs(posixpath.dirname(staging))
        self.transport.put_bytes(data, staging, 0o600)
        self.run_expect((0,), ["install", "-D", "-m", f"{mode:o}", staging, path], sudo=True)
        self.run(["rm", "-f", staging])

    def write_text(self, path: str, text: str, *, mode: int = 0o644, sudo: bool = False) -> None:
        self.write_bytes(path, text.encode(), mode=mode, sudo=sudo)

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], timeout=30).ok

    # -- user-space programs ----------------------------------------------------------------------
    def program(self, *sources: str | Path, name: str | None = None, cflags: str = "-O2 -Wall",
                libs: str = "", timeout: float = PROGRAM_BUILD_TIMEOUT_S) -> Program:
        """Compile C sources with the guest's gcc and headers; returns a :class:`Program`.

        ``sources`` are ``.c`` files, headers they include (``.h``, copied beside them) or
        folders of both. The same sources are not compiled twice in a guest that still has
        the binary."""
        files = _program_sources([self.host_path(s) for s in sources])
        units = [f for f in files if f.suffix == ".c"]
        if not units:
            raise ConfigurationError(f"no .c file among {', '.join(map(str, sources))}")
        name = name or units[0].stem
        digest = hashlib.sha256()
        for source in files:
            digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
        digest.update(f"{cflags}\0{libs}".encode())
        key = f"{name}-{digest.hexdigest()[:12]}"
        remote_dir = posixpath.join(self.remote_base, "programs", key)
        binary = posixpath.join(remote_dir, name)
        cached = self._programs.get(key)
        if cached is not None and self.exists(binary):
            return cached
        with tempfile.TemporaryDirectory(prefix="harness-program-") as scratch:
            for source in files:
                (Path(scratch) / source.name).write_bytes(source.read_bytes())
            sync_tree(self.transport, Path(scratch), remote_dir)
        command = (f"cd {shlex.quote(remote_dir)} && gcc {cflags} -o {shlex.quote(name)} "
                   + " ".join(shlex.quote(f.name) for f in units) + (f" {libs}" if libs else "")
                   + " 2>&1")
        result = self.run(command, timeout=timeout)
        if not result.ok:
            raise ProgramBuildError(name, result, files)
        program = Program(self, name, binary)
        self._programs[key] = program
        return program

    # -- kernel state -----------------------------------------------------------------------------
    @property
    def kernel_release(self) -> str:
        """The guest's ``uname -r`` (asked once)."""
        return self.builder.kernel_release()

    @property
    def kernel_version(self) -> tuple[int, ...]:
        """The running kernel as a comparable tuple, ``(6, 12, 57)``: in a test of a kernel
        matrix, ``if guest.kernel_version < (6, 4): pytest.skip("needs 6.4")``."""
        return version_tuple(self.kernel_release)

    def loaded_modules(self) -> set[str]:
        result = self.transport.run("cut -d' ' -f1 /proc/modules", timeout=30)
        return set(result.stdout.split())


def _program_sources(sources: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            files += sorted(f for f in source.iterdir() if f.suffix in (".c", ".h"))
        elif source.is_file():
            files.append(source)
        else:
            raise ConfigurationError(f"program source {source} does not exist")
    if not files:
        raise ConfigurationError(f"no C sources in {', '.join(map(str, sources)) or '()'}")
    if len({f.name for f in files}) != len(files):
        raise ConfigurationError("program sources must have distinct file names")
    return files
