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

import fcntl
import io
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.boxbuild import ROOTFS_COMPLETE
from harness.errors import HarnessError
from harness.sync import source_files
from harness.transport import Transport
from harness.untrusted import CLEAN_ENV, capped_list, one_line

SANDBOX_PATH = CLEAN_ENV["PATH"]
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
    # gcov's notes files (a build with coverage profiling), relative path -> content
    gcno_files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class RootfsBuilder:
    """kbuild in a bubblewrap sandbox whose root is the box's kept root filesystem."""

    rootfs: Path
    work_root: Path  # host folder for the per-build copies of the sources
    limits: SandboxLimits = field(default_factory=lambda: SandboxLimits())

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
                                   "sh", "-c", probe], capture_output=True, text=True, timeout=60,
                                  env=CLEAN_ENV)
        return parse_toolchain(done.stdout)

    def run_tool(self, folder: Path, argv: list[str], timeout: float = 120) -> str:
        """A program of the box (e.g. its gcov) on the files in ``folder``, in the same sandbox
        as the toolchain probe: no network, no capabilities, only ``folder`` writable."""
        done = subprocess.run([*self.sandbox_argv(folder, "/tmp/work"), *argv],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=CLEAN_ENV)
        if done.returncode != 0:
            raise ToolFailed(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def compile(self, source_dir: Path, guest_dir: str, make_command: str,
                timeout: float, limit_name: str = "") -> CompileOutcome:
        """Run ``make_command`` on a copy of the sources at ``guest_dir`` in a confined sandbox.

        The sources are bound read-only and copied into a size-limited tmpfs; make runs as an
        unprivileged user with process, CPU-time, memory and file-size limits, for at most
        ``timeout`` seconds (``limit_name`` says where that figure came from). Its log and
        .ko files come back as one tar stream, and a .ko is taken only when it is a regular
        file within the size cap. Nothing the Makefile does can reach a host file.
        """
        self.work_root.mkdir(parents=True, exist_ok=True)
        limits = self.limits
        with tempfile.TemporaryDirectory(prefix="sources-", dir=self.work_root) as staging:
            files, _ = source_files(source_dir)
            for rel, path in files.items():
                target = Path(staging) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            with build_user(limits) as uid:
                argv = [*self.confined_argv(Path(staging)),
                        "sh", "-c", confined_script(guest_dir, make_command, limits, uid)]
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        env=CLEAN_ENV)
                try:
                    archive, errors = proc.communicate(timeout=timeout)
                    status = proc.returncode
                except subprocess.TimeoutExpired:
                    where = f" ({limit_name})" if limit_name else ""
                    return CompileOutcome(TIMED_OUT,
                                          f"build stopped after {timeout:g} s{where}\n", {})
                finally:
                    # Also when something else interrupted the wait (a test's time limit,
                    # Ctrl-C): nothing the Makefile started outlives this call, nor holds the
                    # uid the next build takes.
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.communicate()
        log, outputs, problems = read_build_archive(archive, limits)
        log += errors.decode(errors="replace")
        if problems:
            return CompileOutcome(REJECTED, log + "\n".join(problems) + "\n", {})
        if status != 0:
            return CompileOutcome(status, log, {})
        return CompileOutcome(status, log, *split_outputs(outputs))

    def confined_argv(self, sources: Path) -> list[str]:
        """bubblewrap as root for the mounts only: the read-only root filesystem, the sources
        read-only inside a size-limited tmpfs at /tmp; no network, no other
        namespace shared, every capability dropped but the two that let the script become the
        unprivileged build user. No user namespace: the build user must be a real, unprivileged
        uid on this machine, or the kernel would not count its processes."""
        limits = self.limits
        return [
            "bwrap", "--ro-bind", str(self.rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.scratch_bytes), "--perms", "1777", "--tmpfs", "/tmp",
            "--ro-bind", str(sources), SOURCES_AT,
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_CHOWN", "--cap-add", "CAP_KILL",
            # setpriv empties the build user's bounding set; newer util-linux (trixie's 2.41)
            # fails without the capability that allows it instead of skipping that step
            "--cap-add", "CAP_SETPCAP",
            "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", "/tmp",
            "--setenv", "LC_ALL", "C", "--chdir", "/tmp",
        ]


class ToolFailed(HarnessError):
    """A program run in the box's root filesystem failed."""


TIMED_OUT = 124
MAX_LOG_BYTES = 2 << 20  # the end of a build log that is kept, wherever the build ran
REJECTED = 125  # the build ran, but what it left is not taken (a link, too large)
SOURCES_AT = "/tmp/.harness-sources"


@dataclass(frozen=True)
class SandboxLimits:
    """What one host build may use. Its uid is a real one on this machine, used by nothing
    else and by no other build at the same time (:func:`build_user`), so RLIMIT_NPROC counts
    exactly this build's processes: a student who takes them all starves no one else."""

    first_uid: int = 64999  # builds at once take 64999, 64998, ... (BUILD_USERS of them)
    processes: int = 128  # of one build: each concurrent build is a uid of its own
    cpu_seconds: int = 900  # per process
    memory_bytes: int = 4 << 30  # address space per process
    file_bytes: int = 256 << 20  # largest file
    scratch_bytes: int = 512 << 20  # the whole writable tmpfs
    max_ko_bytes: int = 64 << 20  # one .ko
    max_log_bytes: int = MAX_LOG_BYTES  # the build log kept (its end)
    max_outputs: int = 64  # .ko and .gcno files taken from one build
    max_stream_bytes: int = 256 << 20  # all that one build sends back (log and outputs)


BUILD_USERS = 16  # builds at once on one machine, each as its own uid
BUILD_USER_LOCKS = Path("/run/lock/harness-build-users")


def build_uids(limits: SandboxLimits) -> list[int]:
    """The uids builds run as, one a build while it runs."""
    return list(range(limits.first_uid, limits.first_uid - BUILD_USERS, -1))


@contextmanager
def build_user(limits: SandboxLimits, locks: Path | None = None) -> Iterator[int]:
    """A uid no other build on this machine holds until this one ends (an advisory lock a
    uid, held by this process: a crashed grader leaves none behind)."""
    if locks is None:
        locks = _lock_folder()
    locks.mkdir(parents=True, exist_ok=True)
    while True:
        for uid in build_uids(limits):
            with open(locks / f"{uid}.lock", "w") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield uid
                finally:
                    _wait_for_no_process_of(uid)
                return
        time.sleep(0.2)  # every uid builds: the next to end frees one


def _lock_folder() -> Path:
    """Where the uids' locks are: one folder for the whole machine (the builds of every
    grader), or one of this user's when that one is not theirs to write."""
    shared = BUILD_USER_LOCKS
    if not shared.parent.is_dir():
        shared = Path(tempfile.gettempdir()) / BUILD_USER_LOCKS.name
    with suppress(OSError):
        shared.mkdir(parents=True, exist_ok=True)
    if os.access(shared, os.W_OK):
        return shared
    return Path(tempfile.gettempdir()) / f"{BUILD_USER_LOCKS.name}-{os.getuid()}"


def _wait_for_no_process_of(uid: int, deadline_s: float = 10.0) -> None:
    """The kernel reaps a killed sandbox's processes a moment after it ends: the uid is
    handed on once they are gone (or after the deadline), so none counts against the next."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and any(_owner(entry) == uid for entry in os.scandir("/proc")
                                         if entry.name.isdigit()):
        time.sleep(0.05)


def _owner(entry: os.DirEntry[str]) -> int | None:
    try:
        return entry.stat().st_uid
    except OSError:  # gone meanwhile
        return None


def confined_script(guest_dir: str, make_command: str, limits: SandboxLimits, uid: int) -> str:
    """Inside the sandbox, as root: copy the sources, become the build user with its limits
    and make (its output into a root-owned log it cannot replace), kill whatever it left
    running, then write the log and the .ko files (whatever their type: the host takes
    regular files only and names the rest) as tar to stdout. ``uid``: :func:`build_user`'s."""
    q = shlex.quote
    become = (f"setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all "
              f"--bounding-set=-all --no-new-privs "
              f"prlimit --nproc={limits.processes} --cpu={limits.cpu_seconds} "
              f"--as={limits.memory_bytes} --fsize={limits.file_bytes} --core=0 -- "
              # SCHED_IDLE: the build (and anything it starts) only gets CPU nobody else wants,
              # so the VMs and other students' tests run at full speed beside it.
              "chrt --idle 0")
    return (
        f"set -u; mkdir -p {LOG_DIR} {q(guest_dir)} && chmod 755 {LOG_DIR} && "
        f"cp -R {SOURCES_AT}/. {q(guest_dir)}/ && chown -R {uid}:{uid} {q(guest_dir)} && "
        f"cd {q(guest_dir)} || exit 90\n"
        # Out of memory, the kernel kills the build's processes before a VM or the grader
        # (they inherit the score and, unprivileged, cannot lower it).
        "echo 1000 > /proc/self/oom_score_adj\n"
        f"{become} sh -c {q(make_command)} </dev/null >{LOG_DIR}/{LOG_NAME} 2>&1\n"
        "status=$?\n"
        f"setpriv --reuid={uid} --regid={uid} --clear-groups kill -KILL -1 2>/dev/null\n"
        # Only the log's end crosses to the host: a Makefile that prints without end costs
        # the host no more than this.
        f"tail -c {limits.max_log_bytes} {LOG_DIR}/{LOG_NAME} > {LOG_DIR}/tail && "
        f"mv {LOG_DIR}/tail {LOG_DIR}/{LOG_NAME}\n"
        # Everything that crosses is bounded: the host reads at most max_stream_bytes.
        f"{{ tar -C {LOG_DIR} -cf - {LOG_NAME}; cd {q(guest_dir)} && "
        "find . -maxdepth 3 \\( -name '*.ko' -o -name '*.gcno' \\) -print0 | "
        f"head -z -n {limits.max_outputs + 1} | tar --null --no-recursion -T - -cf -; }} | "
        f"head -c {limits.max_stream_bytes}\n"
        "exit $status\n"
    )


LOG_DIR = "/tmp/.harness-build"
LOG_NAME = "build.log"


def read_build_archive(data: bytes, limits: SandboxLimits
                       ) -> tuple[str, dict[str, bytes], list[str]]:
    """The log and the outputs (.ko, .gcno) the sandbox wrote (two tar streams, back to back):
    outputs are taken when they are regular files within the cap; every other one is named as
    a problem."""
    log = ""
    outputs: dict[str, bytes] = {}
    problems: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", ignore_zeros=True) as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                kind = _MEMBER_KINDS.get(member.type, "not a regular file")
                if name == LOG_NAME and member.isreg() and not log:
                    handle = archive.extractfile(member)
                    raw = handle.read() if handle else b""
                    log = raw[-limits.max_log_bytes:].decode(errors="replace")
                elif not member.isreg():
                    problems.append(f"build output {one_line(name, 200)} is {kind}: only "
                                    "regular files are taken")
                elif member.size > limits.max_ko_bytes:
                    problems.append(f"build output {one_line(name, 200)} is {member.size} "
                                    "bytes, over the "
                                    f"{limits.max_ko_bytes} byte limit")
                elif PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                    problems.append(f"build output {one_line(name, 200)} is outside the module "
                                    "folder")
                elif len(outputs) >= limits.max_outputs:
                    problems.append(f"the build left more than {limits.max_outputs} .ko and "
                                    ".gcno files: none is taken")
                    break
                else:
                    handle = archive.extractfile(member)
                    outputs[name] = handle.read() if handle else b""
    except tarfile.TarError as err:
        problems.append(f"the build's output could not be read (more than "
                        f"{limits.max_stream_bytes} bytes, or broken): {err}")
    return log, outputs, capped_list(problems, 10, "problems")


def split_outputs(outputs: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Build outputs as (.ko files, gcov notes files)."""
    ko = {name: data for name, data in outputs.items() if name.endswith(".ko")}
    return ko, {name: data for name, data in outputs.items() if name not in ko}


_MEMBER_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
                 tarfile.DIRTYPE: "a folder", tarfile.FIFOTYPE: "a named pipe",
                 tarfile.CHRTYPE: "a device", tarfile.BLKTYPE: "a device"}
