"""A kernel module in the guest: sync, build, insmod with parameters, rmmod, state queries.

``insmod``/``rmmod`` run with argv quoting and validated parameters (no shell injection), each
with a timeout. Exit 137/139 (``Killed``/``Segmentation fault``) means the kernel crashed inside
the module's init or exit; a command that never returns means the module hung the kernel.
"""

from __future__ import annotations

import dataclasses
import graphlib
import hashlib
import itertools
import os
import posixpath
import re
import shlex
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.build import BuildResult, ModuleBuildError, module_name
from harness.errors import CommandTimeout, ConfigurationError, KernelFailure, ModuleError
from harness.guest import Guest
from harness.kmem import KmemLedger, parse_span, span_script
from harness.kmsg import Capture
from harness.sync import SyncResult, sync_tree, tree_digest
from harness.transport import CommandResult, Transport

if TYPE_CHECKING:
    from harness.leaks import LeakCheck

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARAM_VALUE = re.compile(r"^[\x21-\x7e ]*$")  # printable ASCII; quotes rejected below
CRASH_EXIT = {137: "Killed", 139: "Segmentation fault"}
LOAD_TIMEOUT_S = 120.0
UNLOAD_TIMEOUT_S = 120.0
_LOAD_COUNTER = itertools.count(1)


_START_FAILED = "harness: the leak check did not start"
_SPAN_FOLLOWS = "harness: module span follows"


def load_script(insmod: str, start: str = "", span_of: str | None = None) -> str:
    """``insmod`` with, before it, a leak check's start script (its failure is reported, the
    load goes on) and, after a load that worked, :func:`harness.kmem.span_script`. The exit
    status is insmod's. No subshell: a fork costs a tenth of a second on the debug box."""
    if not start and span_of is None:
        return insmod
    lines = []
    if start:  # what it says goes to stdout, followed by a mark when it failed
        lines.append(f"{{ {start}\n}} 2>&1 || echo {shlex.quote(_START_FAILED)}")
    lines += [insmod, "rc=$?"]
    if span_of is not None:
        lines.append(f"if [ $rc = 0 ]; then echo {shlex.quote(_SPAN_FOLLOWS)}; "
                     f"{span_script(span_of)}; fi")
    lines.append("exit $rc")
    return "\n".join(lines)


def split_load_output(result: CommandResult, insmod: str
                      ) -> tuple[CommandResult, str | None, str]:
    """:func:`load_script`'s result as insmod's own, the start script's error, and the span."""
    own, _, span = result.stdout.partition(_SPAN_FOLLOWS + "\n")
    start_error = None
    said, failed, rest = own.partition(_START_FAILED + "\n")
    if failed:
        start_error = " ".join(said.split()) or "it failed without a message"
        own = rest
    return dataclasses.replace(result, command=insmod, stdout=own), start_error, span


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
class AllocationWatch:
    """Who watches one test's allocations: the ``kmem`` fixture's ledger and the per-test leak
    check (:mod:`harness.leaks`). A test run owns one and hands it to each module it makes, so
    a load reports the module's address range to both; nothing of it outlives the test."""

    ledger: KmemLedger | None = None
    leak_check: LeakCheck | None = None


@dataclass
class Module:
    guest: Guest
    source_dir: Path
    extra_cflags: str = ""
    name: str | None = None
    build_mode: str | None = None  # auto | host | guest; None: the guest's (session's) choice
    build_timeout: float | None = None  # None: the builder's
    build_limit_name: str = ""  # whose limit build_timeout is, said when it is hit
    build_result: BuildResult | None = field(default=None, init=False)
    last_sync: SyncResult | None = field(default=None, init=False)
    history: list[str] = field(default_factory=list, init=False)  # what was done, for reports
    # Set when init/exit hung or crashed, even if the test caught the exception.
    hung: str | None = field(default=None, init=False)
    crashed: str | None = field(default=None, init=False)
    # When it was last loaded (a counter shared by the guest): leftovers unload newest first.
    loaded_order: int = field(default=0, init=False)
    # Loaded by load() and not unloaded by unload() since (a test may rmmod it by other means).
    may_be_loaded: bool = field(default=False, init=False)
    # Called with each sibling module this one creates (its dependencies from the same
    # folder), so the test run tracks and unloads them too.
    on_sibling: Callable[[Module], None] | None = field(default=None, repr=False)
    # Who watches this test's allocations: the test run's, shared by its modules (siblings too).
    watch: AllocationWatch = field(default_factory=lambda: AllocationWatch(), repr=False)

    def __post_init__(self) -> None:
        self.source_dir = Path(self.source_dir)
        if not (self.source_dir / "Makefile").is_file() and \
                not (self.source_dir / "Kbuild").is_file():
            raise ConfigurationError(
                f"{self.source_dir} has no Makefile or Kbuild: a module folder needs one "
                "(e.g. `obj-m += hello.o`)"
            )
        self.remote_dir = posixpath.join(self.guest.remote_base, guest_folder_name(
            self.source_dir))

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
                                          mode=self.build_mode, timeout=self.build_timeout,
                                          limit_name=self.build_limit_name)
        self.build_result = result
        self.history.append(f"build: {'ok' if result.ok else 'FAILED'}"
                            f"{' (reused an identical earlier build)' if result.reused else ''}"
                            f" in {result.seconds:.1f} s, {result.where}")
        if check and not result.ok:
            raise ModuleBuildError(result)
        return result

    def _require_name(self, result: BuildResult | None = None) -> str:
        """The name of the one module this object stands for (or a clear error), after a
        build (``result``: one just made)."""
        names = module_names(result or self._ensure_built())
        if self.name is None and len(names) == 1:
            self.name = names[0]
        elif self.name is None:
            raise ModuleError(
                f"{self.source_dir} builds {len(names)} modules ({', '.join(names)}): pick one "
                f"with kmod(path, name={names[-1]!r}), or take them all with kmod.all(path), "
                "which loads them in the order their dependencies need")
        elif self.name not in names:
            raise ModuleError(f"{self.source_dir} builds no module named {self.name!r}; it "
                              f"builds {', '.join(names)}")
        return self.name

    @property
    def names(self) -> list[str]:
        """Every module the folder builds (after a build)."""
        return module_names(self._ensure_built())

    def _ensure_built(self) -> BuildResult:
        # Always through build(): a snapshot revert may have wiped the guest folder since the
        # last build, and an unchanged tree costs one manifest read and a cache lookup.
        return self.build()

    @property
    def ko_path(self) -> str:
        result = self.build_result
        if result is None or not result.ok:
            raise ModuleError("the module has not been built")
        self._require_name(result)
        for ko in result.ko_files:
            if module_name(ko) == self.name:
                return ko
        raise ModuleError(f"{self.source_dir} built no {self.name}.ko")

    def dependencies(self, result: BuildResult | None = None) -> list[str]:
        """The modules this one needs loaded first (modinfo's ``depends``)."""
        result = result or self._ensure_built()
        local = result.local_ko.get(self._require_name(result))
        if local is None or not local.is_file():
            return []
        return [d for d in ko_modinfo(local.read_bytes()).get("depends", [""])[0].split(",") if d]

    def sibling(self, name: str) -> Module:
        """Another module built by the same folder (the same build, its own name)."""
        other = dataclasses.replace(self, name=name)  # same folder, flags and limits
        if self.on_sibling is not None:
            self.on_sibling(other)
        return other

    def _load_dependencies(self, result: BuildResult) -> None:
        """Siblings from the same folder first (insmod), then in-tree modules (modprobe)."""
        siblings = set(module_names(result))
        for dep in self.dependencies(result):
            # Asked each time: loading one dependency may have loaded the next already.
            if dep in self.guest.loaded_modules():
                continue
            if dep in siblings:
                self.history.append(f"load: {dep} first ({self.name} depends on it)")
                self.sibling(dep).load()
            else:
                self.history.append(f"load: modprobe {dep} ({self.name} depends on it)")
                probe = self.transport.run(["modprobe", dep], sudo=True, timeout=LOAD_TIMEOUT_S)
                if not probe.ok:
                    raise LoadError(dep, probe, [])

    # -- load and unload --------------------------------------------------------------------------
    def load(self, timeout: float = LOAD_TIMEOUT_S, **params: object) -> CommandResult:
        args = [format_param(k, v) for k, v in params.items()]
        result = self._ensure_built()
        self._require_name(result)
        self._load_dependencies(result)
        check = self.watch.leak_check
        start = check.start_script() if check is not None else ""
        watchers = [w for w in (self.watch.ledger, check) if w is not None]
        capture = self.guest.kernel_log.capture(since_last_read=True)
        command = "insmod " + shlex.quote(self.ko_path) + "".join(
            " " + shlex.quote(a) for a in args)
        self.history.append(f"load: {command}")
        # One round trip: the leak check's start, insmod, and the module's address range
        # (its call sites, recognisable after the unload) for whoever watches allocations.
        script = load_script(command, start, self.name if watchers else None)
        try:
            result = self.transport.run(script, sudo=True, timeout=timeout)
        except CommandTimeout as err:
            hang = ModuleHung(self.name, "init", timeout)
            self.hung = str(hang)
            raise hang from err
        result, start_error, span_text = split_load_output(result, command)
        if check is not None and start:
            check.started(start_error)
        self._judge(result, "init", capture)
        self.loaded_order = next(_LOAD_COUNTER)
        self.may_be_loaded = True
        if watchers:
            local = self.build_result.local_ko.get(self.name) if self.build_result else None
            span = parse_span(self.name, span_text, local, self.source_dir)
            for watcher in watchers if span is not None else ():
                watcher.remember(span)
        return result

    def unload(self, timeout: float = UNLOAD_TIMEOUT_S) -> CommandResult:
        if self.name is None:
            raise ModuleError("the module was never built or loaded")
        capture = self.guest.kernel_log.capture(since_last_read=True)
        self.history.append(f"unload: rmmod {self.name}")
        try:
            result = self.transport.run(["rmmod", self.name], sudo=True, timeout=timeout)
        except CommandTimeout as err:
            hang = ModuleHung(self.name, "exit", timeout)
            self.hung = str(hang)
            raise hang from err
        if not result.ok and result.exit_status not in CRASH_EXIT:
            raise UnloadError(f"unloading {self.name} failed: {result.stderr.strip()}")
        self._judge(result, "exit", capture)
        self.may_be_loaded = False
        return result

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


@dataclass
class ModuleGroup:
    """Every module one folder builds, each a :class:`Module`, loaded in dependency order.

    ``group.load()`` loads them all (a module after those it depends on), ``group.unload()``
    unloads them in reverse, ``group["name"]`` is one of them; it is a context manager too.
    """

    modules: list[Module]

    @classmethod
    def of(cls, first: Module) -> ModuleGroup:
        names = first.names
        by_name = {names[0]: first}
        first.name = names[0]
        for name in names[1:]:
            by_name[name] = first.sibling(name)
        order = dependency_order({n: m.dependencies() for n, m in by_name.items()})
        return cls([by_name[n] for n in order])

    @property
    def names(self) -> list[str]:
        return [m.name or "" for m in self.modules]

    def __getitem__(self, name: str) -> Module:
        for module in self.modules:
            if module.name == name:
                return module
        raise KeyError(f"no module {name!r} here; there are {', '.join(self.names)}")

    def __iter__(self) -> Iterator[Module]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    def load(self) -> None:
        for module in self.modules:
            if not module.is_loaded():
                module.load()

    def unload(self) -> None:
        for module in reversed(self.modules):
            if module.is_loaded():
                module.unload()

    def __enter__(self) -> ModuleGroup:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()


def dependency_order(depends: dict[str, list[str]]) -> list[str]:
    """Names ordered so each comes after the ones it depends on (outside names ignored)."""
    sorter = graphlib.TopologicalSorter(
        {name: [d for d in deps if d in depends] for name, deps in depends.items()})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as err:
        raise ModuleError(f"these modules depend on each other in a cycle: {err.args[1]}") \
            from err


def module_names(result: BuildResult) -> list[str]:
    return [module_name(ko) for ko in result.ko_files]


def ko_modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``.modinfo`` section of a .ko (ELF64, little-endian): ``key=value`` strings, read
    on the host without modinfo (e.g. ``depends``, ``name``, ``vermagic``, ``parm``); {} for a
    file that is no such ELF or whose headers point outside it (its author wrote every byte)."""
    try:
        return _modinfo(data)
    except (struct.error, ValueError, IndexError):
        return {}


def _modinfo(data: bytes) -> dict[str, list[str]]:
    if data[:4] != b"\x7fELF" or len(data) < 6 or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)
        return name, offset, size

    _, strings_at, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for index in range(shnum):
        name_at, offset, size = section(index)
        end = data.index(b"\0", strings_at + name_at)
        if data[strings_at + name_at:end] != b".modinfo":
            continue
        for entry in data[offset:offset + size].split(b"\0"):
            key, sep, value = entry.decode(errors="replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


_KBUILD_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def guest_folder_name(path: Path) -> str:
    """The build folder's name in the guest: the folder's name reduced to what kbuild takes in
    ``M=`` (no spaces, quotes, ``$``, ``:``, ``#``...: ``José García (late)`` builds as
    ``Jos_Garc_a_late``), at most 40 characters, then a short hash of the folder's absolute
    path, so two folders never share a guest folder and the name never decides the build."""
    resolved = path.resolve()
    readable = _KBUILD_UNSAFE.sub("_", resolved.name).strip("._-")[:40] or "module"
    tag = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:8]
    return f"{readable}-{tag}"


def _safe_lines(capture: Capture) -> list[str]:
    try:
        return capture.lines
    except Exception:  # noqa: BLE001 - the guest may be dying; report what we have
        return [r.text for r in capture.records]
