"""Building a module with kbuild against the guest's kernel, and reading the compiler's diagnostics.

``make -C /lib/modules/$(uname -r)/build M=DIR modules`` runs against the running kernel's
headers and the guest's compiler, bounded by a timeout: in the guest, or (much faster under
emulation) on the host inside the box's own root filesystem (:mod:`harness.hostbuild`), which
has the same headers and compiler. The result keeps the full log,
the diagnostics mapped back to the host's paths, and the .ko files (also copied to the host, so
a crash can be symbolized even after the guest died). A build of the same sources for the same
kernel is reused from that host copy (:class:`BuildCache`) instead of compiling again.

The two places are two :class:`Compiler` implementations behind one protocol; :class:`Builder`
decides which one a kernel gets and keeps the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
import shlex
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.errors import BuildError, ConfigurationError
from harness.hostbuild import (
    MAX_LOG_BYTES,
    NO_ROOTFS,
    TIMED_OUT,
    CompileOutcome,
    RootfsBuilder,
    guest_toolchain,
    split_outputs,
)
from harness.transport import Transport
from harness.untrusted import capped_list, one_line
from harness.vmoptions import BUILD_MODES

DEFAULT_TIMEOUT_S = 600.0

_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<column>\d+):)?\s+"
    r"(?P<severity>fatal error|error|warning|note):\s+(?P<message>.*)$"
)
_MODPOST = re.compile(r"^(?P<severity>ERROR|WARNING): modpost: (?P<message>.*)$")


@dataclass(frozen=True)
class Diagnostic:
    file: str | None
    line: int | None
    column: int | None
    severity: str  # error | warning | note
    message: str

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}:" if self.line else f"{self.file}:"
        return f"{where} {self.severity}: {self.message}".strip()


def parse_diagnostics(log: str, path_map: dict[str, str] | None = None) -> list[Diagnostic]:
    """gcc and modpost diagnostics from a build log; guest paths rewritten by ``path_map``."""
    found: list[Diagnostic] = []
    for raw in log.splitlines():
        line = raw.strip()
        match = _DIAGNOSTIC.match(line)
        if match:
            file = match["file"]
            for remote, local in (path_map or {}).items():
                if file.startswith(remote.rstrip("/") + "/"):
                    file = local.rstrip("/") + "/" + file[len(remote.rstrip("/")) + 1:]
                elif not file.startswith("/") and (Path(local) / file).is_file():
                    # kbuild from 6.13 on compiles an M= module from its own folder and
                    # names its files relative to it
                    file = str(Path(local) / file)
            severity = "error" if match["severity"] == "fatal error" else match["severity"]
            found.append(Diagnostic(file, int(match["line"]),
                                    int(match["column"]) if match["column"] else None,
                                    severity, match["message"]))
            continue
        match = _MODPOST.match(line)
        if match:
            found.append(Diagnostic(None, None, None, match["severity"].lower(),
                                    "modpost: " + match["message"]))
    return found


def first_error(diagnostics: list[Diagnostic], module_dir: Path) -> Diagnostic | None:
    """The error to show first: the first in the module's own files (an error gcc places in a
    kernel header, through a macro, is followed by one on the module's line), else the first;
    its file as the user would type it."""
    errors = [d for d in diagnostics if d.severity == "error"]
    own = [d for d in errors if d.file and _is_below(Path(d.file), module_dir)]
    if not (own or errors):
        return None
    first = (own or errors)[0]
    return dataclasses.replace(first, file=str(_display_path(Path(first.file)))) \
        if first.file else first


def _is_below(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@dataclass
class BuildResult:
    source_dir: Path
    remote_dir: str
    kernel_release: str
    exit_status: int
    log: str
    diagnostics: list[Diagnostic]
    ko_files: list[str] = field(default_factory=list)  # guest paths
    local_ko: dict[str, Path] = field(default_factory=dict)  # module name -> host copy
    seconds: float = 0.0
    reused: bool = False  # True when the .ko came from the host's copy of an earlier build
    where: str = "guest"  # IN_GUEST or ON_HOST: where the compiler ran
    # gcov notes of a build with coverage profiling: path relative to the folder -> host copy
    local_gcno: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and bool(self.ko_files)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def first_error(self) -> Diagnostic | None:
        return first_error(self.diagnostics, self.source_dir)

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class ModuleBuildError(BuildError):
    """The module did not build. The message starts with the compiler's errors."""

    def __init__(self, result: BuildResult):
        self.result = result
        lines = capped_list([one_line(str(d), 500) for d in result.errors], 20, "errors")
        if not lines:
            tail = [one_line(line, 500) for line in result.log.strip().splitlines()[-15:]]
            lines = ["(no compiler error was recognised; the end of the build log:)", *tail]
        super().__init__(
            f"building {result.source_dir} failed (make exited {result.exit_status}):\n"
            + "\n".join(lines)
        )


class HeadersMissing(BuildError):
    """The running kernel has no build tree in the guest."""


# kbuild's switch for gcov profiling of every object it compiles (Documentation/dev-tools/
# gcov.rst); on the command line it reaches the module folder's objects without its Makefile.
PROFILE_VARIABLE = "GCOV_PROFILE=y"


def make_command(remote_dir: str, extra_cflags: str = "", jobs: int = 2,
                 release: str | None = None, profile: bool = False) -> str:
    """kbuild for the running kernel, or for ``release`` (outside the guest, uname lies);
    ``profile``: with gcov's line counters."""
    kernel = shlex.quote(release) if release else "$(uname -r)"
    kcflags = f" KCFLAGS={shlex.quote(extra_cflags)}" if extra_cflags else ""
    profiling = f" {PROFILE_VARIABLE}" if profile else ""
    return (f"make -j{jobs} -C /lib/modules/{kernel}/build M={shlex.quote(remote_dir)}"
            f"{kcflags}{profiling} modules 2>&1")


def build_key(tree_digest: str, kernel_release: str, extra_cflags: str, build_folder: str,
              profile: bool = False) -> str:
    """The identity of a build: everything its outcome depends on. The build folder is part of
    it because kbuild's ``M=`` is (a path it refuses fails, and objects carry their folder),
    so identical sources built in another folder are another build, and no folder's failure
    is ever handed to another."""
    parts: list[object] = [tree_digest, kernel_release, extra_cflags, build_folder]
    if profile:
        parts.append(PROFILE_VARIABLE)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


IN_GUEST = "guest"
ON_HOST = "host"
PLACE_WORDS = {IN_GUEST: "in the guest",
               ON_HOST: "on the host, in the box's root filesystem (bubblewrap)"}


class HostBuildUnavailable(ConfigurationError):
    """``--build host`` was asked for but cannot be honoured; the message says why."""


@dataclass
class Builder:
    """Builds one synced module folder, in the guest or on the host in the box's root filesystem,
    with a host-side cache of the results.

    ``mode`` is ``auto`` (the host when its root filesystem matches the guest's kernel and gcc,
    else the guest), ``host`` or ``guest``. Both run the same make command at the same path, so
    their modules are the same.
    """

    transport: Transport
    cache_root: Path  # host folder for .ko copies and logs, keyed by build_key
    headers_hint: str = "install the kernel headers package for $(uname -r)"
    timeout: float = DEFAULT_TIMEOUT_S
    mode: str = "auto"
    host: RootfsBuilder | None = None
    profile: bool = False  # build with gcov profiling (coverage runs)
    counts: Counter[str] = field(default_factory=Counter, init=False)  # place or "reused"
    _last_decision: tuple[str, str] | None = field(default=None, init=False)  # place, why
    _place: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    _release: str | None = field(default=None, init=False)
    # Builds stopped by their time limit in this run: (build key, limit) -> result
    _stopped: dict[tuple[str, float], BuildResult] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        _check_mode(self.mode)

    def kernel_release(self) -> str:
        """The guest's ``uname -r``, asked once: reverts and reboots keep the box's kernel."""
        if self._release is None:
            self._release = self.transport.run("uname -r", timeout=30).check().stdout.strip()
        return self._release

    def check_headers(self, release: str) -> None:
        probe = self.transport.run(f"test -d /lib/modules/{shlex.quote(release)}/build",
                                   timeout=30)
        if not probe.ok:
            raise HeadersMissing(
                f"the guest kernel {release} has no headers (/lib/modules/{release}/build is "
                f"missing): {self.headers_hint}"
            )

    def place_for(self, release: str, mode: str | None = None) -> str:
        """IN_GUEST or ON_HOST for this kernel in ``mode`` (default: the builder's); decided
        once, and ``decision`` says why."""
        mode = _check_mode(mode or self.mode)
        if (release, mode) not in self._place:
            place, why = self._decide(release, mode)
            if place == IN_GUEST and mode == "host":
                raise HostBuildUnavailable(f"a build on the host was asked for, but {why}")
            self._place[release, mode] = place
            self._last_decision = place, why
        return self._place[release, mode]

    @property
    def decision(self) -> str | None:
        """Where builds go, and why (None until a build needed deciding)."""
        if self._last_decision is None:
            return None
        place, why = self._last_decision
        return f"modules are built {PLACE_WORDS[place]}: {why}"

    def summary(self) -> str | None:
        """One line for the end of a run: how many builds ran where, and why there."""
        if not self.counts:
            return None
        parts = [f"{self.counts[place]} {PLACE_WORDS[place]}"
                 for place in (ON_HOST, IN_GUEST) if self.counts[place]]
        if self.counts["reused"]:
            parts.append(f"{self.counts['reused']} reused from identical earlier builds")
        why = f"; why: {self._last_decision[1]}" if self._last_decision else ""
        return f"module builds: {', '.join(parts)}{why}"

    def _decide(self, release: str, mode: str) -> tuple[str, str]:
        if mode == "guest":
            return IN_GUEST, "asked for (build mode guest)"
        if self.host is None:
            return IN_GUEST, NO_ROOTFS
        reason = self.host.unavailable_reason()
        if reason:
            return IN_GUEST, reason
        guest = guest_toolchain(self.transport)
        mine = self.host.toolchain(release)
        differences = guest.differences(mine)
        if differences:
            return IN_GUEST, ("the box's root filesystem does not match the guest ("
                              + "; ".join(differences) + ")")
        return ON_HOST, (f"same kernel build ({release}, Module.symvers "
                         f"{mine.symvers_sha256[:12]}) and compiler ({mine.gcc}) as the guest")

    def build(self, source_dir: Path, remote_dir: str, tree_digest: str,
              extra_cflags: str = "", force: bool = False, mode: str | None = None,
              timeout: float | None = None, limit_name: str = "") -> BuildResult:
        """Build (or reuse an identical earlier build); ``mode`` overrides the builder's, and
        ``timeout`` its time limit (``limit_name`` says whose, in the log when it is hit)."""
        timeout = timeout or self.timeout
        release = self.kernel_release()
        cache = BuildCache(self.cache_root)
        key = build_key(tree_digest, release, extra_cflags, remote_dir, self.profile)
        if not force and (key, timeout) in self._stopped:
            return self._stopped[key, timeout]
        if not force:
            result = self._reuse(cache.load(key), source_dir, remote_dir, release)
            if result is not None:
                self.counts["reused"] += 1
                return result
        place = self.place_for(release, mode)
        self.counts[place] += 1
        started = time.monotonic()
        command = make_command(remote_dir, extra_cflags, release=release, profile=self.profile)
        outcome = self._compiler(place).compile(source_dir, remote_dir, release, command,
                                                timeout, limit_name)
        result = BuildResult(
            source_dir, remote_dir, release, outcome.exit_status, outcome.log,
            parse_diagnostics(outcome.log, {remote_dir: str(_display_path(source_dir))}),
            [posixpath.join(remote_dir, rel) for rel in outcome.ko_files],
            seconds=round(time.monotonic() - started, 2), where=place,
        )
        # Failures are cached too: the same sources fail the same way for the same kernel and
        # folder, and a grader's every test would otherwise pay for the failing build again.
        # Not a build stopped by its time limit: that depends on the limit and on how busy
        # the machine was, neither part of the key; this run remembers it for that limit.
        if outcome.exit_status == TIMED_OUT:
            self._stopped[key, timeout] = result  # this run's limit: not kept on disk
        else:
            result.local_ko, result.local_gcno = cache.store(key, result, outcome)
        return result

    def _compiler(self, place: str) -> Compiler:
        if place == ON_HOST:
            assert self.host is not None
            return HostCompiler(self.host, self.transport)
        return GuestCompiler(self.transport, self.check_headers)

    def _reuse(self, cached: CachedBuild | None, source_dir: Path, remote_dir: str,
               release: str) -> BuildResult | None:
        """The cached build, its .ko files put back into the guest folder (a revert wiped
        them); None when there is none or its host copies are gone."""
        if cached is None:
            return None
        result = BuildResult(source_dir, remote_dir, release, cached.exit_status, cached.log,
                             cached.diagnostics, seconds=0.0, reused=True, where=cached.where)
        if cached.exit_status != 0:
            return result
        result.local_gcno = dict(cached.gcno_files)
        for rel, host_copy in cached.ko_files.items():
            remote = posixpath.join(remote_dir, rel)
            present = self.transport.stat(remote)
            if present is None or present.size != host_copy.stat().st_size:
                self.transport.put_bytes(host_copy.read_bytes(), remote)
            result.ko_files.append(remote)
            result.local_ko[module_name(host_copy)] = host_copy
        return result


class Compiler(Protocol):
    """Runs ``command`` (:func:`make_command`) for one synced module folder; the .ko files
    end up in the guest folder."""

    def compile(self, source_dir: Path, remote_dir: str, release: str, command: str,
                timeout: float, limit_name: str) -> CompileOutcome: ...


@dataclass
class GuestCompiler:
    """make in the guest, against its running kernel's headers."""

    transport: Transport
    check_headers: Callable[[str], None]

    def compile(self, source_dir: Path, remote_dir: str, release: str, command: str,
                timeout: float, limit_name: str) -> CompileOutcome:
        self.check_headers(release)
        # The guest's own `timeout` stops make and what it started; the transport's bound is
        # only for a guest that stops answering.
        # Only the log's end crosses (tail keeps it): a Makefile that prints without end
        # costs the host bounded memory. The exit status goes around the pipe in a file.
        status_file = shlex.quote(posixpath.join(remote_dir, ".harness-build-status"))
        run = self.transport.run(
            f"{{ timeout -k 5 {timeout:g} sh -c {shlex.quote(command)}; echo $? > "
            f"{status_file}; }} 2>&1 | tail -c {MAX_LOG_BYTES}; exit $(cat {status_file})",
            timeout=timeout + 60)
        if run.exit_status in (124, 137):
            where = f" ({limit_name})" if limit_name else ""
            return CompileOutcome(TIMED_OUT, run.stdout + run.stderr
                                  + f"\nbuild stopped after {timeout:g} s{where}\n", {})
        outputs: dict[str, bytes] = {}
        if run.exit_status == 0:
            listing = self.transport.run(
                f"find {shlex.quote(remote_dir)} -maxdepth 3 -type f "
                "\\( -name '*.ko' -o -name '*.gcno' \\)", timeout=30)
            outputs = {posixpath.relpath(path, remote_dir): self.transport.get_bytes(path)
                       for path in sorted(listing.stdout.split())}
        return CompileOutcome(run.exit_status, run.stdout + run.stderr, *split_outputs(outputs))


@dataclass
class HostCompiler:
    """make on the host in the box's root filesystem (sandboxed); the .ko files are copied
    into the guest folder afterwards."""

    rootfs: RootfsBuilder
    transport: Transport

    def compile(self, source_dir: Path, remote_dir: str, release: str, command: str,
                timeout: float, limit_name: str) -> CompileOutcome:
        outcome = self.rootfs.compile(source_dir, remote_dir, command, timeout, limit_name)
        for rel, data in outcome.ko_files.items():
            self.transport.put_bytes(data, posixpath.join(remote_dir, rel))
        return outcome


@dataclass(frozen=True)
class CachedBuild:
    exit_status: int
    log: str
    diagnostics: list[Diagnostic]
    where: str
    ko_files: dict[str, Path]  # path relative to the module folder -> host copy
    gcno_files: dict[str, Path] = field(default_factory=dict)  # the same, for gcov notes


@dataclass
class BuildCache:
    """Earlier builds on the host, one folder per build key: ``build.log``, ``result.json``
    (exit status, .ko paths, seconds, where, diagnostics) and a copy of each .ko. The only
    place that reads or writes that layout."""

    root: Path

    def store(self, key: str, result: BuildResult, outcome: CompileOutcome
              ) -> tuple[dict[str, Path], dict[str, Path]]:
        """Keep a finished build; returns module name -> host copy of its .ko, and the gcov
        notes files' relative paths -> host copies."""
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        local = {}
        ko_files = outcome.ko_files
        for rel, data in ko_files.items():
            copy = folder / posixpath.basename(rel)
            copy.write_bytes(data)
            local[module_name(copy)] = copy
        notes = {}
        for rel, data in outcome.gcno_files.items():
            notes[rel] = folder / "gcno" / rel
            notes[rel].parent.mkdir(parents=True, exist_ok=True)
            notes[rel].write_bytes(data)
        (folder / "build.log").write_text(result.log)
        (folder / "result.json").write_text(json.dumps({
            "exit_status": result.exit_status,
            "ko_files": sorted(ko_files),
            "seconds": result.seconds,
            "where": result.where,
            "diagnostics": [vars(d) for d in result.diagnostics],
            "gcno_files": sorted(notes),
        }))
        return local, notes

    def load(self, key: str) -> CachedBuild | None:
        """The build stored under ``key``; None when there is none or a .ko copy is missing."""
        folder = self.root / key
        try:
            meta = json.loads((folder / "result.json").read_text())
            log = (folder / "build.log").read_text()
        except (FileNotFoundError, ValueError):
            return None
        copies = {rel: folder / posixpath.basename(rel) for rel in meta["ko_files"]}
        if not all(copy.is_file() for copy in copies.values()):
            return None
        notes = {rel: folder / "gcno" / rel for rel in meta.get("gcno_files", [])}
        if not all(copy.is_file() for copy in notes.values()):
            return None
        return CachedBuild(meta["exit_status"], log,
                           [Diagnostic(**d) for d in meta.get("diagnostics", [])],
                           meta.get("where", IN_GUEST), copies, notes)


def module_name(ko_path: str | Path) -> str:
    """The kernel's name for a .ko file: its stem with ``-`` read as ``_``."""
    return Path(ko_path).stem.replace("-", "_")


def _check_mode(mode: str) -> str:
    if mode not in BUILD_MODES:
        raise ValueError(f"build mode must be one of {', '.join(BUILD_MODES)}, not {mode!r}")
    return mode


def _display_path(path: Path) -> Path:
    """A path relative to the current folder when it is below it (as users typed it)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path.resolve()
