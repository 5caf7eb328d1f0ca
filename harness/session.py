"""A run's VM, from user options to a clean kernel: catalogue lookup, driver choice, the clean
snapshot, where modules are built, and :class:`HarnessSession`, which owns the VM for a whole
run and gets a clean kernel back after a test broke it (snapshot revert, then a reboot, then a
new VM, each bounded in time).

The pytest plugin, the CLI and the grader all get their VM and session here, so they behave
alike; each test of a session is a :class:`harness.testrun.TestRun`.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import accel, coverage
from harness.boxbuild import box_direct_boot, box_kernel, box_rootfs
from harness.boxes import load_catalogue
from harness.cleanstate import save_clean_snapshot
from harness.errors import HarnessError, VMError
from harness.guest import Guest
from harness.hostbuild import RootfsBuilder
from harness.kmod import AllocationWatch
from harness.leaks import LeakCheck, choose, has_kmemleak
from harness.oops.symbolize import KernelImage
from harness.testrun import RunServices, TestRun
from harness.vm import VM, VMSettings
from harness.vmoptions import VMOptions


def make_vm(options: VMOptions, project_dir: Path, log=None,
            catalogue_dir: Path | None = None) -> VM:
    """The VM whose state lives in ``project_dir/.harness``; boxes.yaml is looked up in
    ``catalogue_dir`` (default: the same folder)."""
    log = log or sys.stderr
    catalogue = load_catalogue(options.boxes_file, project_dir=catalogue_dir or project_dir)
    box = catalogue.get(options.box)
    if options.libvirt_host and options.driver == "auto":
        # The probe runs here, not on the remote host: a remote libvirt host is a KVM host.
        driver, probe = "kvm", None
    else:
        driver, probe = accel.choose_driver(options.driver)
    if probe is not None and not probe.kvm_works:
        print(f"harness: {accel.TCG_WARNING} ({probe.detail})", file=log, flush=True)
    # Direct kernel boot needs the kernel on the libvirt host: this machine only.
    direct = None if options.libvirt_host else box_direct_boot(box)
    vm = VM(VMSettings(box=box, driver=driver, memory=options.memory, cpus=options.cpus,
                       libvirt_host=options.libvirt_host, libvirt_user=options.libvirt_user,
                       libvirt_ssh_key=options.libvirt_ssh_key,
                       isolate_network=options.isolate_network, direct_boot=direct),
            project_dir=project_dir, log=log)
    # Plain `vagrant up` in this folder then picks the same driver.
    (vm.state / "driver").write_text(driver + "\n")
    return vm


def make_guest(vm: VM, build_mode: str = "auto", cache_name: str = "build-cache") -> Guest:
    """The module workflow's view of ``vm``; builds go where ``build_mode`` says (auto: the
    host's copy of the box's root filesystem when it matches the guest)."""
    box = vm.settings.box
    rootfs = box_rootfs(box)
    host = RootfsBuilder(rootfs, vm.state / "host-build") if rootfs else None
    return Guest(vm.transport(), vm.state / cache_name,
                 headers_hint=f"install {box.headers_package} ({box.headers_install})",
                 build_mode=build_mode, host_builder=host)


@dataclass
class HarnessSession:
    vm: VM
    guest: Guest
    ignore_titles: list[str] = field(default_factory=list)
    restores: int = 0
    clean: bool = True  # nothing ran since the kernel was last booted or restored
    isolation_key: str | None = None
    leak_check_mode: str = "off"  # harness.leaks.LEAK_CHECK_MODES
    # Line coverage of the modules the tests build (None: off, or the kernel cannot count).
    coverage: coverage.CoverageCollector | None = None
    _kernel_has_kmemleak: bool | None = None

    @functools.cached_property
    def kernel_image(self) -> KernelImage | None:
        """The guest kernel's vmlinux with debug info, when the harness compiled that kernel."""
        built = box_kernel(self.vm.settings.box)
        return KernelImage(built.vmlinux, built.system_map) if built else None

    def count_lines(self, collector: coverage.CoverageCollector) -> str | None:
        """Build modules with gcov profiling and collect each test's counters into
        ``collector``; None when on, else why this box's kernel cannot (also told to the
        collector, for the run's summary)."""
        transport = self.guest.transport
        if transport.run(coverage.CAPABILITY_PROBE, sudo=True, timeout=60).stdout.strip() \
                == "yes":
            self.coverage = collector
            self.guest.builder.profile = True
            return None
        release = self.guest.builder.kernel_release()
        why = (f"box {self.vm.settings.box.name}: tests on it are not counted: "
               + coverage.NO_GCOV.format(release=release))
        collector.not_counted(why)
        return why

    def gcov(self) -> coverage.GcovRunner:
        """The box's own gcov (the compiler's version) in its root filesystem's sandbox, or
        the host's when the box's root filesystem is not kept here."""
        host = self.guest.builder.host
        if host is None or host.unavailable_reason():
            return coverage.host_gcov
        return lambda folder, names: host.run_tool(
            folder, ["gcov", *coverage.GCOV_ARGS, *names])

    def leak_check(self, watch: AllocationWatch) -> LeakCheck | None:
        """A fresh leak check for the next test, as ``leak_check_mode`` says; it shares the
        test's own ledger (``watch.ledger``, the kmem fixture's) when there is one."""
        if self.leak_check_mode == "off":
            return None
        if self._kernel_has_kmemleak is None:  # the box's kernel: asked once
            self._kernel_has_kmemleak = has_kmemleak(self.guest.transport)
        mode = self.leak_check_mode
        if mode == "auto" and getattr(self.vm.settings, "driver", "kvm") == "qemu":
            # Under emulation kmemleak's two scans of guest memory cost about 40 s a test
            # (bench/bench.py --only sanitizers); the ledger gives the same findings for
            # kmalloc'd memory in about a second. --vm-leak-check=kmemleak still asks for it.
            mode = "ledger"
        return choose(self.guest.transport, mode, self._kernel_has_kmemleak,
                      shared=lambda: watch.ledger)

    def isolate(self, key: str, archive_as: str) -> str | None:
        """A clean kernel when ``key`` (e.g. a student) differs from the previous test's."""
        previous, self.isolation_key = self.isolation_key, key
        if previous is None or previous == key or self.clean:
            return None
        return self.restore_clean(archive_as=archive_as)

    def restore_clean(self, archive_as: str) -> str:
        """Get a clean kernel back; says what it did. Snapshot, then reboot, then a new VM."""
        attempts = (
            ("snapshot revert", lambda: self.vm.restore_snapshot(archive_as=archive_as)),
            ("reboot", self._reboot),
            ("new VM", self._recreate),
        )
        errors = []
        for name, action in attempts:
            try:
                seconds = action()
                self.restores += 1
                self.clean = True
                archived = self.vm.serial_archive_path(archive_as)
                kept = f"; serial log kept in {archived}" if archived.exists() else ""
                return f"restored a clean kernel by {name} in {seconds:.1f} s{kept}"
            except HarnessError as err:
                errors.append(f"{name}: {err}")
        raise VMError("could not get a clean kernel back:\n" + "\n".join(errors))

    def _reboot(self) -> float:
        seconds = self.vm.reboot()
        save_clean_snapshot(self.vm)
        return seconds

    def _recreate(self) -> float:
        started = time.monotonic()
        self.vm.destroy()
        self.vm.up()
        self.vm.wait_for_ssh()
        save_clean_snapshot(self.vm)
        return time.monotonic() - started

    def new_test(self, name: str, expect_oops: list[str] | None = None,
                 expect_source: str | None = None) -> TestRun:
        self.clean = False
        services = RunServices(
            guest=self.guest, box=self.vm.settings.box.name, console=lambda: self.vm.console,
            ignore_titles=self.ignore_titles,
            kernel_image=lambda: self.kernel_image, coverage=self.coverage, gcov=self.gcov,
            leak_check=self.leak_check)
        run = TestRun(services, name, expect_oops, expect_source)
        run.start()
        return run
