"""Building a module in the guest with kbuild, and reading the compiler's diagnostics.

``make -C /lib/modules/$(uname -r)/build M=DIR modules`` runs in the guest, against the running
kernel's headers and the guest's compiler, bounded by a timeout. The result keeps the full log,
the diagnostics mapped back to the host's paths, and the .ko files (also copied to the host, so
a crash can be symbolized even after the guest died). A build of the same sources for the same
kernel is reused from that host copy instead of compiling again.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.transport import Transport

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

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and bool(self.ko_files)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


class BuildError(RuntimeError):
    """The module did not build. The message starts with the compiler's errors."""

    def __init__(self, result: BuildResult):
        self.result = result
        lines = [str(d) for d in result.errors]
        if not lines:
            tail = result.log.strip().splitlines()[-15:]
            lines = ["(no compiler error was recognised; the end of the build log:)", *tail]
        super().__init__(
            f"building {result.source_dir} failed (make exited {result.exit_status}):\n"
            + "\n".join(lines)
        )


class HeadersMissing(RuntimeError):
    """The running kernel has no build tree in the guest."""


def make_command(remote_dir: str, extra_cflags: str = "", jobs: int = 2) -> str:
    kcflags = f" KCFLAGS={shlex.quote(extra_cflags)}" if extra_cflags else ""
    return (f"make -j{jobs} -C /lib/modules/$(uname -r)/build M={shlex.quote(remote_dir)}"
            f"{kcflags} modules 2>&1")


def build_key(tree_digest: str, kernel_release: str, extra_cflags: str) -> str:
    text = json.dumps([tree_digest, kernel_release, extra_cflags])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Builder:
    """Builds one synced module folder in the guest, with a host-side cache of the results."""

    transport: Transport
    cache_root: Path  # host folder for .ko copies and logs, keyed by build_key
    headers_hint: str = "install the kernel headers package for $(uname -r)"
    timeout: float = DEFAULT_TIMEOUT_S

    def kernel_release(self) -> str:
        return self.transport.run("uname -r", timeout=30).check().stdout.strip()

    def check_headers(self, release: str) -> None:
        probe = self.transport.run(f"test -d /lib/modules/{shlex.quote(release)}/build",
                                   timeout=30)
        if not probe.ok:
            raise HeadersMissing(
                f"the guest kernel {release} has no headers (/lib/modules/{release}/build is "
                f"missing): {self.headers_hint}"
            )

    def build(self, source_dir: Path, remote_dir: str, tree_digest: str,
              extra_cflags: str = "", force: bool = False) -> BuildResult:
        release = self.kernel_release()
        key = build_key(tree_digest, release, extra_cflags)
        cached = self.cache_root / key
        if not force and (cached / "result.json").is_file():
            result = self._reuse(cached, source_dir, remote_dir, release)
            if result is not None:
                return result
        self.check_headers(release)
        started = time.monotonic()
        run = self.transport.run(make_command(remote_dir, extra_cflags), timeout=self.timeout)
        ko_files: list[str] = []
        if run.exit_status == 0:
            listing = self.transport.run(
                f"find {shlex.quote(remote_dir)} -maxdepth 3 -name '*.ko' -type f", timeout=30)
            ko_files = sorted(listing.stdout.split())
        log = run.stdout + run.stderr
        result = BuildResult(
            source_dir, remote_dir, release, run.exit_status, log,
            parse_diagnostics(log, {remote_dir: str(_display_path(source_dir))}),
            ko_files, seconds=round(time.monotonic() - started, 2),
        )
        # Failures are cached too: the same sources fail the same way for the same kernel, and
        # a grader's every test would otherwise pay for the failing build again.
        self._store(cached, result)
        return result

    def _store(self, cached: Path, result: BuildResult) -> None:
        cached.mkdir(parents=True, exist_ok=True)
        for ko in result.ko_files:
            local = cached / posixpath.basename(ko)
            local.write_bytes(self.transport.get_bytes(ko))
            result.local_ko[local.stem.replace("-", "_")] = local
        (cached / "build.log").write_text(result.log)
        (cached / "result.json").write_text(json.dumps({
            "exit_status": result.exit_status,
            "ko_files": [posixpath.relpath(k, result.remote_dir) for k in result.ko_files],
            "seconds": result.seconds,
            "diagnostics": [vars(d) for d in result.diagnostics],
        }))

    def _reuse(self, cached: Path, source_dir: Path, remote_dir: str,
               release: str) -> BuildResult | None:
        """Put the cached .ko files back into the guest folder (after a revert wiped them)."""
        meta = json.loads((cached / "result.json").read_text())
        log = (cached / "build.log").read_text()
        diagnostics = [Diagnostic(**d) for d in meta.get("diagnostics", [])]
        if meta["exit_status"] != 0:
            return BuildResult(source_dir, remote_dir, release, meta["exit_status"], log,
                               diagnostics, seconds=0.0, reused=True)
        ko_files, local = [], {}
        for rel in meta["ko_files"]:
            host_copy = cached / posixpath.basename(rel)
            if not host_copy.is_file():
                return None
            remote = posixpath.join(remote_dir, rel)
            present = self.transport.stat(remote)
            if present is None or present.size != host_copy.stat().st_size:
                self.transport.put_bytes(host_copy.read_bytes(), remote)
            ko_files.append(remote)
            local[host_copy.stem.replace("-", "_")] = host_copy
        return BuildResult(source_dir, remote_dir, release, 0, log, diagnostics, ko_files, local,
                           seconds=0.0, reused=True)


def _display_path(path: Path) -> Path:
    """A path relative to the current folder when it is below it (as users typed it)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path.resolve()
