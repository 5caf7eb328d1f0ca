"""A kernel module in the guest: sync, build, insmod with parameters, rmmod, state queries.

``insmod``/``rmmod`` run with argv quoting and validated parameters (no shell injection), each
with a timeout. Exit 137/139 (``Killed``/``Segmentation fault``) means the kernel crashed inside
the module's init or exit; a command that never returns means the module hung the kernel.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.build import Builder, BuildResult, ModuleBuildError
from harness.errors import CommandTimeout, KernelFailure, ModuleError
from harness.hostbuild import RootfsBuilder
from harness.kmsg import Capture, KernelLog
from harness.sync import SyncResult, sync_tree, tree_digest
from harness.transport import CommandResult, Transport

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAM_VALUE = re.compile(r"^[\x21-\x7e ]*$")  # printable ASCII; quotes rejected below
CRASH_EXIT = {137: "Killed", 139: "Segmentation fault"}
LOAD_TIMEOUT_S = 120.0
UNLOAD_TIMEOUT_S = 120.0


class LoadError(ModuleError):
    def __init__(self, module: str, result: CommandResult, kernel_lines: list[str]):
        self.result = result
        self.kernel_lines = kernel_lines
        reason = result.stderr.strip() or result.stdout.strip()
        detail = "\n".join(f"  {line}" for line in kernel_lines[-15:])
        super().__init__(
            f"loading {module} failed: {reason}"
            + (f"\nthe kernel said:\n{detail}" if detail else "")
        )


class UnloadError(ModuleError):
    pass


class KernelCrashed(KernelFailure):
    """The kernel crashed while running the module's init or exit (insmod/rmmod was killed)."""

    def __init__(self, module: str, phase: str, result: CommandResult, kernel_lines: list[str]):
        self.module, self.phase, self.result = module, phase, result
        self.kernel_lines = kernel_lines
        how = CRASH_EXIT.get(result.exit_status, f"exit {result.exit_status}")
        detail = "\n".join(f"  {line}" for line in kernel_lines[-30:])
        super().__init__(
            f"the kernel crashed inside {module}'s {phase} function "
            f"({'insmod' if phase == 'init' else 'rmmod'} was {how}):\n{detail}"
        )


class ModuleHung(KernelFailure):
    def __init__(self, module: str, phase: str, timeout: float):
        self.module, self.phase = module, phase
        super().__init__(
            f"{module}'s {phase} did not return within {timeout:g} s "
            "(an endless loop or a deadlock in the module?)"
        )


def format_param(name: str, value: object) -> str:
    if not PARAM_NAME.match(name):
        raise ModuleError(f"invalid module parameter name {name!r}: use letters, digits and _")
    if isinstance(value, bool):
        text = "Y" if value else "N"
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    if not PARAM_VALUE.match(text) or '"' in text:
        raise ModuleError(
            f"invalid value for module parameter {name!r}: {text!r} "
            "(printable characters only, no double quotes)"
        )
    return f'{name}="{text}"' if " " in text else f"{name}={text}"


@dataclass
class Guest:
    """A booted guest as the module workflow sees it: transport, kernel log, build cache."""

    transport: Transport
    build_cache: Path
    remote_base: str = "/tmp/harness"
    headers_hint: str = "install the kernel headers package for $(uname -r)"
    build_mode: str = "auto"  # auto | host | guest (see harness.build.Builder)
    host_builder: RootfsBuilder | None = None

    def __post_init__(self) -> None:
        self.kernel_log = KernelLog(self.transport)
        self.builder = Builder(self.transport, self.build_cache, self.headers_hint,
                               mode=self.build_mode, host=self.host_builder)

    def loaded_modules(self) -> set[str]:
        result = self.transport.run("cut -d' ' -f1 /proc/modules", timeout=30)
        return set(result.stdout.split())


@dataclass
class Module:
    guest: Guest
    source_dir: Path
    extra_cflags: str = ""
    name: str | None = None
    build_mode: str | None = None  # auto | host | guest; None: the guest's (session's) choice
    build_result: BuildResult | None = field(default=None, init=False)
    last_sync: SyncResult | None = field(default=None, init=False)
    history: list[str] = field(default_factory=list, init=False)  # what was done, for reports
    # Set when init/exit hung or crashed, even if the test caught the exception.
    hung: str | None = field(default=None, init=False)
    crashed: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.source_dir = Path(self.source_dir)
        if not (self.source_dir / "Makefile").is_file() and \
                not (self.source_dir / "Kbuild").is_file():
            raise ModuleError(
                f"{self.source_dir} has no Makefile or Kbuild: a module folder needs one "
                "(e.g. `obj-m += hello.o`)"
            )
        tag = _path_tag(self.source_dir)
        self.remote_dir = posixpath.join(self.guest.remote_base,
                                         f"{self.source_dir.resolve().name}-{tag}")

    @property
    def transport(self) -> Transport:
        return self.guest.transport

    # -- sync and build ---------------------------------------------------------------------------
    def sync(self) -> SyncResult:
        self.last_sync = sync_tree(self.transport, self.source_dir, self.remote_dir)
        self.history.append(f"sync: sent {len(self.last_sync.sent)}, removed "
                            f"{len(self.last_sync.removed)}, unchanged {self.last_sync.unchanged}")
        return self.last_sync

    def build(self, force: bool = False, check: bool = True) -> BuildResult:
        self.sync()
        result = self.guest.builder.build(self.source_dir, self.remote_dir,
                                          tree_digest(self.source_dir), self.extra_cflags, force,
                                          mode=self.build_mode)
        self.build_result = result
        self.history.append(f"build: {'ok' if result.ok else 'FAILED'}"
                            f"{' (reused an identical earlier build)' if result.reused else ''}"
                            f" in {result.seconds:.1f} s, {result.where}")
        if result.ok and self.name is None:
            self.name = Path(result.ko_files[0]).stem.replace("-", "_")
        if check and not result.ok:
            raise ModuleBuildError(result)
        return result

    def _ensure_built(self) -> BuildResult:
        # Always through build(): a snapshot revert may have wiped the guest folder since the
        # last build, and an unchanged tree costs one manifest read and a cache lookup.
        return self.build()

    @property
    def ko_path(self) -> str:
        result = self.build_result
        if result is None or not result.ok:
            raise ModuleError("the module has not been built")
        for ko in result.ko_files:
            if Path(ko).stem.replace("-", "_") == self.name:
                return ko
        return result.ko_files[0]

    # -- load and unload --------------------------------------------------------------------------
    def load(self, timeout: float = LOAD_TIMEOUT_S, **params: object) -> CommandResult:
        args = [format_param(k, v) for k, v in params.items()]
        self._ensure_built()
        assert self.name is not None
        capture = self.guest.kernel_log.capture()
        command = "insmod " + shlex.quote(self.ko_path) + "".join(
            " " + shlex.quote(a) for a in args)
        self.history.append(f"load: {command}")
        try:
            result = self.transport.run(command, sudo=True, timeout=timeout)
        except CommandTimeout as err:
            hang = ModuleHung(self.name, "init", timeout)
            self.hung = str(hang)
            raise hang from err
        return self._judge(result, "init", capture)

    def unload(self, timeout: float = UNLOAD_TIMEOUT_S) -> CommandResult:
        if self.name is None:
            raise ModuleError("the module was never built or loaded")
        capture = self.guest.kernel_log.capture()
        self.history.append(f"unload: rmmod {self.name}")
        try:
            result = self.transport.run(["rmmod", self.name], sudo=True, timeout=timeout)
        except CommandTimeout as err:
            hang = ModuleHung(self.name, "exit", timeout)
            self.hung = str(hang)
            raise hang from err
        if not result.ok and result.exit_status not in CRASH_EXIT:
            raise UnloadError(f"unloading {self.name} failed: {result.stderr.strip()}")
        return self._judge(result, "exit", capture)

    def _judge(self, result: CommandResult, phase: str, capture: Capture) -> CommandResult:
        assert self.name is not None
        if result.exit_status in CRASH_EXIT:
            crash = KernelCrashed(self.name, phase, result, _safe_lines(capture))
            self.crashed = f"the kernel crashed in {self.name}'s {phase}"
            raise crash
        if not result.ok:
            raise LoadError(self.name, result, _safe_lines(capture))
        return result

    def __enter__(self) -> Module:
        if not self.is_loaded():
            self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_loaded():
            self.unload()

    # -- state ------------------------------------------------------------------------------------
    def is_loaded(self) -> bool:
        return self.name is not None and self.name in self.guest.loaded_modules()

    def refcount(self) -> int | None:
        if not self.name:
            return None
        result = self.transport.run(["cat", f"/sys/module/{self.name}/refcnt"], timeout=30)
        return int(result.stdout.strip()) if result.ok else None

    def parameters(self) -> dict[str, str]:
        if not self.name:
            return {}
        script = (f"cd /sys/module/{shlex.quote(self.name)}/parameters 2>/dev/null && "
                  "for p in *; do [ -r \"$p\" ] && printf '%s=%s\\n' \"$p\" \"$(cat \"$p\")\"; "
                  "done")
        result = self.transport.run(script, sudo=True, timeout=30)
        pairs = (line.partition("=") for line in result.stdout.splitlines() if "=" in line)
        return {k: v for k, _, v in pairs}

    def modinfo(self) -> dict[str, list[str]]:
        self._ensure_built()
        result = self.transport.run(["/sbin/modinfo", self.ko_path], timeout=30).check()
        info: dict[str, list[str]] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info.setdefault(key.strip(), []).append(value.strip())
        return info

    def state(self, live: bool = True) -> str:
        """One paragraph for failure reports; ``live=False`` when the guest must not be asked."""
        lines = [f"module folder: {self.source_dir}", f"guest folder: {self.remote_dir}"]
        lines += [f"  {h}" for h in self.history]
        try:
            if self.name and live:
                loaded = self.is_loaded()
                lines.append(f"{self.name}: {'loaded' if loaded else 'not loaded'}")
                if loaded:
                    lines.append(f"  refcount {self.refcount()}, parameters {self.parameters()}")
        except Exception as err:  # noqa: BLE001 - a report must not fail on a dead guest
            lines.append(f"(state unavailable: {err})")
        return "\n".join(lines)


def _path_tag(path: Path) -> str:
    """A short hash of the folder's absolute path: two folders never share a guest folder."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


def _safe_lines(capture: Capture) -> list[str]:
    try:
        return capture.lines
    except Exception:  # noqa: BLE001 - the guest may be dying; report what we have
        return [r.text for r in capture.records]
