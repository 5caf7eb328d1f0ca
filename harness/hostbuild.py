"""Building a module on the host inside the box's own root filesystem: the fast path under TCG.

``harness box build`` keeps the root filesystem it made the box from
(``~/.cache/harness/boxes/NAME/DIGEST/rootfs``): the very kernel headers, gcc and binutils the
guest has. bubblewrap enters it read-only, with no network, no capabilities and only the module's
build folder writable, bound at the same path the folder has in the guest, and runs the same
kbuild command there at the host's native speed instead of under emulation.

It is used only when the guest agrees: the guest's kernel release, the checksum of its headers'
``Module.symvers`` (every exported symbol's CRC: the identity of the kernel build) and its gcc
version must equal the root filesystem's. Otherwise the build runs in the guest and the reason
is said.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.boxbuild import ROOTFS_COMPLETE
from harness.sync import source_files
from harness.transport import Transport

SANDBOX_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NO_ROOTFS = "a cloud box has no root filesystem on the host"


@dataclass(frozen=True)
class Toolchain:
    """What a module build depends on, as a kernel build identity plus the compiler."""

    release: str
    symvers_sha256: str
    gcc: str

    def differences(self, other: Toolchain) -> list[str]:
        return [f"{name} {mine!r} vs {theirs!r}"
                for name, mine, theirs in (
                    ("kernel", self.release, other.release),
                    ("Module.symvers sha256", self.symvers_sha256[:16], other.symvers_sha256[:16]),
                    ("gcc", self.gcc, other.gcc))
                if mine != theirs]


# One round trip, run alike in the guest and in the sandbox: release, the checksum of the
# headers' Module.symvers ("-" when the headers are missing) and gcc's version line.
TOOLCHAIN_PROBE = ('r={release}; echo "$r"; '
                   '(sha256sum "/lib/modules/$r/build/Module.symvers" 2>/dev/null || echo -) '
                   '| cut -d" " -f1; (gcc --version 2>/dev/null || echo -) | head -1')


def parse_toolchain(output: str) -> Toolchain:
    release, symvers, gcc = ([line.strip() for line in output.splitlines()] + ["-"] * 3)[:3]
    return Toolchain(release, symvers, gcc)


def guest_toolchain(transport: Transport) -> Toolchain:
    probe = TOOLCHAIN_PROBE.format(release="$(uname -r)")
    return parse_toolchain(transport.run(probe, timeout=60).check().stdout)


@dataclass(frozen=True)
class CompileOutcome:
    exit_status: int
    log: str
    ko_files: dict[str, bytes]  # path relative to the module folder -> content


@dataclass
class RootfsBuilder:
    """kbuild in a bubblewrap sandbox whose root is the box's kept root filesystem."""

    rootfs: Path
    work_root: Path  # host folder for the per-build scratch copies

    def unavailable_reason(self) -> str | None:
        """None when builds can run here; else what is missing and what to do."""
        if not (self.rootfs / ROOTFS_COMPLETE).is_file():
            return (f"the box's root filesystem is not on this host ({self.rootfs}); "
                    "`harness box build` keeps it")
        if shutil.which("bwrap") is None:
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        return None

    def sandbox_argv(self, bind: Path, at: str) -> list[str]:
        return [
            "bwrap", "--ro-bind", str(self.rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--bind", str(bind), at, "--chdir", at,
            "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/tmp",
            "--setenv", "LC_ALL", "C",
        ]

    def toolchain(self, release: str) -> Toolchain:
        """The same probe as in the guest, inside the sandbox (the rootfs's symlinks resolve
        within it)."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        probe = TOOLCHAIN_PROBE.format(release=shlex.quote(release))
        with tempfile.TemporaryDirectory(dir=self.work_root) as scratch:
            done = subprocess.run([*self.sandbox_argv(Path(scratch), "/tmp/probe"),
                                   "sh", "-c", probe], capture_output=True, text=True, timeout=60)
        return parse_toolchain(done.stdout)

    def compile(self, source_dir: Path, guest_dir: str, make_command: str,
                timeout: float) -> CompileOutcome:
        """Copy the sendable sources to a scratch folder, bind it at ``guest_dir`` and make."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=self.work_root))
        try:
            files, _ = source_files(source_dir)
            for rel, path in files.items():
                target = scratch / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            argv = [*self.sandbox_argv(scratch, guest_dir), "sh", "-c", make_command]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                      errors="replace")
                status, log = done.returncode, done.stdout + done.stderr
            except subprocess.TimeoutExpired as err:
                out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) \
                    else (err.stdout or "")
                status, log = 124, out + f"\n(build stopped after {timeout:.0f} s)\n"
            if status != 0:
                return CompileOutcome(status, log, {})
            ko_files = {str(ko.relative_to(scratch)): ko.read_bytes()
                        for ko in sorted(scratch.rglob("*.ko"))
                        if len(ko.relative_to(scratch).parts) <= 3}
            return CompileOutcome(status, log, ko_files)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
