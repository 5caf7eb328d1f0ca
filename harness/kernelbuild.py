"""Compiling a box's own kernel on the host: Debian's kernel source package plus a reviewed
config fragment, packaged by kbuild's ``bindeb-pkg``.

The debug box runs such a kernel (KASAN, KFENCE, kmemleak, lockdep, UBSAN): Debian ships none.
The build is cached under ``~/.cache/harness/kernels/DIGEST/`` where DIGEST hashes the source
package, its pinned version, the fragment's text and this builder's version, so an unchanged
recipe is a no-op. What is kept: the image and headers ``.deb`` files (installed into the box's
root filesystem by :mod:`harness.boxbuild`) and ``vmlinux`` with debug info, which symbolizes
core-kernel frames to file:line. The source tree (about 5 GB) is removed once packaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HostError
from harness.hostexec import HostCommandError, Stopwatch, run
from harness.paths import kernel_cache_dir

KERNEL_BUILDER_VERSION = "1"
BASE_CONFIG_TARGETS = ("x86_64_defconfig", "kvm_guest.config")
# Free space the build needs: the unpacked tree with objects (~5 GB), vmlinux, the packages.
DISK_NEEDED_GB = 12
PROGRESS_EVERY_S = 60.0
# tool -> Debian package, for the error message; headers are checked as files.
BUILD_TOOLS = {
    "make": "make", "gcc": "gcc", "bc": "bc", "bison": "bison", "flex": "flex",
    "dpkg-buildpackage": "dpkg-dev", "fakeroot": "fakeroot", "rsync": "rsync", "cpio": "cpio",
    "depmod": "kmod", "xz": "xz-utils", "apt-get": "apt",
}
BUILD_HEADERS = {
    "/usr/include/openssl/opensslv.h": "libssl-dev",
    "/usr/include/libelf.h": "libelf-dev",
}
_CONFIG_LINE = re.compile(r"^(CONFIG_\w+)=(.*)$|^# (CONFIG_\w+) is not set$")


class KernelBuildError(HostError):
    """The kernel could not be built; the message says what to do."""


@dataclass(frozen=True)
class KernelRecipe:
    """A box's own kernel: which source package, which fragment, which command line."""

    source_package: str
    config: Path
    version: str | None = None  # the source package's version; None: the archive's candidate
    cmdline: str = ""

    def digest(self) -> str:
        try:
            fragment = self.config.read_text()
        except OSError as err:
            raise KernelBuildError(
                f"the kernel config fragment {self.config} cannot be read ({err.strerror})"
            ) from err
        text = json.dumps({
            "source_package": self.source_package, "version": self.version,
            "fragment": fragment, "builder": KERNEL_BUILDER_VERSION,
        }, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def fragment_settings(text: str) -> dict[str, str | None]:
    """CONFIG_NAME -> value (None for `is not set`) of a fragment or a .config."""
    settings: dict[str, str | None] = {}
    for line in text.splitlines():
        match = _CONFIG_LINE.match(line.strip())
        if match:
            name = match.group(1) or match.group(3)
            settings[name] = match.group(2) if match.group(1) else None
    return settings


def dropped_settings(fragment: str, final_config: str) -> list[str]:
    """The fragment's lines that Kconfig did not keep (a dependency is missing, a name is
    wrong): each as `CONFIG_X=y (got: n)`."""
    final = fragment_settings(final_config)
    dropped = []
    for name, wanted in fragment_settings(fragment).items():
        got = final.get(name)
        if got != wanted:
            dropped.append(f"{name}={wanted or 'n'} (got: {got or 'n'})")
    return dropped


@dataclass(frozen=True)
class BuiltKernel:
    """What a finished build left in its cache folder."""

    dir: Path
    release: str
    packages: tuple[Path, ...]
    vmlinux: Path

    @property
    def system_map(self) -> Path:
        return self.dir / "System.map"

    @classmethod
    def load(cls, directory: Path) -> BuiltKernel | None:
        stamp = directory / "built.json"
        if not stamp.is_file():
            return None
        data = json.loads(stamp.read_text())
        built = cls(directory, data["release"],
                    tuple(directory / name for name in data["packages"]),
                    directory / "vmlinux")
        if not all(p.is_file() for p in (*built.packages, built.vmlinux)):
            return None
        return built


@dataclass
class KernelBuild:
    recipe: KernelRecipe
    stopwatch: Stopwatch | None = None
    jobs: int | None = None

    def __post_init__(self) -> None:
        self.digest = self.recipe.digest()
        self.dir = kernel_cache_dir(self.digest)
        self.clock = self.stopwatch or Stopwatch()

    def cached(self) -> BuiltKernel | None:
        return BuiltKernel.load(self.dir)

    def build(self) -> BuiltKernel:
        """The built kernel, compiling it first unless this recipe's build is cached."""
        built = self.cached()
        if built is not None:
            self.clock.step(f"kernel {built.release} cached (recipe {self.digest})")
            return built
        self._preflight()
        started = time.monotonic()
        work = self.dir / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        tree = self._unpack(self._download(work), work)
        self._configure(tree)
        self._compile(tree)
        # Known only once kbuild has written auto.conf (LOCALVERSION is applied then).
        release = (tree / "include/config/kernel.release").read_text().strip()
        built = self._keep(tree, release, time.monotonic() - started)
        shutil.rmtree(work)
        self.clock.step(f"kernel {release} built and cached in {self.dir}")
        return built

    def _preflight(self) -> None:
        missing = [f"{tool} (package {pkg})" for tool, pkg in BUILD_TOOLS.items()
                   if shutil.which(tool) is None]
        missing += [f"{path} (package {pkg})" for path, pkg in BUILD_HEADERS.items()
                    if not Path(path).is_file()]
        if missing:
            raise KernelBuildError(
                "building the kernel needs: " + ", ".join(missing)
                + "; install them with apt-get install (or run the README's setup command)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        free_gb = shutil.disk_usage(self.dir).free / 1024**3
        if free_gb < DISK_NEEDED_GB:
            raise KernelBuildError(
                f"building the kernel needs about {DISK_NEEDED_GB} GB free under {self.dir}, "
                f"and {free_gb:.1f} GB are: free some space, or point XDG_CACHE_HOME at a "
                "larger disk"
            )

    def _download(self, work: Path) -> Path:
        package = self.recipe.source_package
        wanted = f"{package}={self.recipe.version}" if self.recipe.version else package
        self.clock.step(f"downloading {wanted} with the host's apt sources")
        try:
            run(["apt-get", "download", wanted], cwd=work)
        except HostCommandError as err:
            raise KernelBuildError(
                f"`apt-get download {wanted}` failed: is {package} in the host's apt sources "
                f"(run apt-get update; bookworm has linux-source-6.1)?\n{err.output.strip()}"
            ) from err
        debs = sorted(work.glob(f"{package}_*.deb"))
        if not debs:
            raise KernelBuildError(f"apt-get download {wanted} left no .deb in {work}")
        return debs[-1]

    def _unpack(self, deb: Path, work: Path) -> Path:
        self.clock.step(f"unpacking {deb.name}")
        tarball_name = None
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                              stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
                for member in outer:
                    if member.isfile() and re.search(r"/usr/src/linux-source-[^/]*\.tar\.\w+$",
                                                     member.name):
                        tarball_name = Path(member.name).name
                        source = outer.extractfile(member)
                        assert source is not None
                        with open(work / tarball_name, "wb") as out:
                            shutil.copyfileobj(source, out, 1 << 20)
                        break
        if tarball_name is None:
            raise KernelBuildError(f"{deb.name} holds no /usr/src/linux-source-*.tar.*")
        run(["tar", "-xf", tarball_name], cwd=work)
        (work / tarball_name).unlink()
        deb.unlink()
        trees = [p for p in work.iterdir() if p.is_dir() and (p / "Makefile").is_file()]
        if len(trees) != 1:
            raise KernelBuildError(f"expected one kernel tree in {work}, found {trees}")
        return trees[0]

    def _configure(self, tree: Path) -> None:
        self.clock.step(f"configuring: {' + '.join(BASE_CONFIG_TARGETS)} + {self.recipe.config}")
        for target in BASE_CONFIG_TARGETS:
            run(["make", target], cwd=tree)
        run(["scripts/kconfig/merge_config.sh", "-m", ".config", str(self.recipe.config)],
            cwd=tree)
        run(["make", "olddefconfig"], cwd=tree)
        dropped = dropped_settings(self.recipe.config.read_text(), (tree / ".config").read_text())
        if dropped:
            raise KernelBuildError(
                f"Kconfig did not keep these lines of {self.recipe.config}: "
                + ", ".join(dropped)
                + ". Each needs an option it depends on, or is misspelled: fix the fragment."
            )

    def _compile(self, tree: Path) -> None:
        jobs = self.jobs or os.cpu_count() or 1
        log = tree.parent / "build.log"
        self.clock.step(
            f"compiling {tree.name} with {jobs} jobs and packaging it (bindeb-pkg); "
            f"about 15-20 min on 2 cores. Log: {log}"
        )
        env = dict(os.environ, KBUILD_BUILD_USER="harness", KBUILD_BUILD_HOST="harness",
                   KDEB_COMPRESS="none", LC_ALL="C")
        argv = ["make", f"-j{jobs}", "bindeb-pkg"]
        code = run_with_progress(argv, tree, env, log, self._progress_line)
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise KernelBuildError(f"`{' '.join(argv)}` in {tree} exited {code}; the log "
                                   f"is {log}. Its end:\n{tail}")

    def _progress_line(self, log: Path) -> None:
        text = log.read_text(errors="replace")
        compiled = text.count("\n  CC ")
        last = text.rstrip().rsplit("\n", 1)[-1].strip()
        self.clock.step(f"  kernel build: {compiled} files compiled; now: {last[:90]}")

    def _keep(self, tree: Path, release: str, seconds: float) -> BuiltKernel:
        kept = []
        for deb in sorted(tree.parent.glob("*.deb")):
            if deb.name.startswith(("linux-image-", "linux-headers-")) and "-dbg_" not in deb.name:
                shutil.move(deb, self.dir / deb.name)
                kept.append(deb.name)
        if not any(name.startswith("linux-image-") for name in kept):
            raise KernelBuildError(f"bindeb-pkg made no linux-image package in {tree.parent}")
        shutil.move(tree / "vmlinux", self.dir / "vmlinux")
        for name in (".config", "System.map"):
            shutil.copy(tree / name, self.dir / name.lstrip("."))
        (self.dir / "built.json").write_text(json.dumps(
            {"release": release, "packages": kept, "digest": self.digest,
             "seconds": round(seconds)}, indent=1))
        built = BuiltKernel.load(self.dir)
        assert built is not None
        return built


def run_with_progress(argv: list[str], cwd: Path, env: dict[str, str], log: Path,
                      progress: Callable[[Path], None],
                      every_s: float = PROGRESS_EVERY_S) -> int:
    """Run a long command with its output in ``log``, calling ``progress(log)`` every
    ``every_s`` seconds; returns its exit status."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            next_report = time.monotonic() + every_s
            while proc.poll() is None:
                time.sleep(1.0)
                if time.monotonic() >= next_report:
                    progress(log)
                    next_report += every_s
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode
