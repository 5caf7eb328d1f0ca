"""From user options to a VM and its guest: catalogue lookup, driver choice, the clean snapshot,
where modules are built.

The pytest plugin, the CLI and the grader all get their VM here, so they behave alike.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import accel
from harness.boxbuild import box_rootfs
from harness.boxes import load_catalogue
from harness.errors import VMError
from harness.guest import Guest
from harness.hostbuild import RootfsBuilder
from harness.vm import VM, VMSettings


@dataclass
class VMOptions:
    box: str | None = None  # catalogue name or Vagrant box name; None: the catalogue's default
    driver: str = "auto"  # auto | kvm | qemu
    memory: int = 2048
    cpus: int = 2
    boxes_file: Path | None = None
    # A remote libvirt host reached over SSH (default: $HARNESS_LIBVIRT_HOST, else this machine).
    libvirt_host: str | None = field(default_factory=lambda: os.environ.get("HARNESS_LIBVIRT_HOST")
                                     or None)
    libvirt_user: str = field(default_factory=lambda: os.environ.get("HARNESS_LIBVIRT_USER")
                              or "root")
    libvirt_ssh_key: str | None = field(
        default_factory=lambda: os.environ.get("HARNESS_LIBVIRT_SSH_KEY") or None)
    isolate_network: bool = False  # grading: the guest reaches nothing (see VMSettings)


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
    vm = VM(VMSettings(box=box, driver=driver, memory=options.memory, cpus=options.cpus,
                       libvirt_host=options.libvirt_host, libvirt_user=options.libvirt_user,
                       libvirt_ssh_key=options.libvirt_ssh_key,
                       isolate_network=options.isolate_network),
            project_dir=project_dir, log=log)
    # Plain `vagrant up` in this folder then picks the same driver.
    (vm.state / "driver").write_text(driver + "\n")
    return vm


def ready_vm(vm: VM, reuse: bool = True) -> VM:
    """Up (or reused, or resumed), reachable over SSH, with a clean snapshot to come back to.

    A VM that exists with a clean snapshot (running, or powered off by the end of an earlier run)
    is reverted to it: that resumes the booted kernel from its saved memory in seconds instead of
    booting, and whatever ran before (a person, or a run interrupted in the middle of a crash)
    leaves nothing behind. A VM made with other settings (box, recipe, driver, size) is replaced.
    """
    recorded = vm.recorded_fingerprint()
    if vm.domain.id and recorded is not None and recorded != vm.settings_fingerprint():
        vm.say(f"the existing VM was made with other settings ({recorded}); replacing it")
        vm.destroy()
    if reuse and vm.has_snapshot():
        running = vm.is_running()
        vm.say("reusing the running VM from its clean snapshot" if running
               else "resuming the saved VM from its clean snapshot (no boot)")
        try:
            seconds = vm.restore_snapshot(archive_as="before-reuse")
            vm.say(f"guest ready in {seconds:.1f} s")
            vm.record_fingerprint()
            return vm
        except VMError as err:
            vm.say(f"could not resume it ({err}); making a new VM")
            vm.destroy()
    if not (reuse and vm.is_running()):
        vm.up()
    vm.wait_for_ssh()
    vm.apply_network_policy()  # a running VM that was reused as it is
    vm.record_fingerprint()
    if not vm.has_snapshot():
        vm.say("saving a snapshot of the clean, booted kernel")
        vm.save_snapshot()
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
