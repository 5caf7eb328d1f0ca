"""From user options to a VM: catalogue lookup, driver choice, and the clean snapshot.

The pytest plugin, the CLI and the grader all get their VM here, so they behave alike.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness import accel
from harness.boxes import load_catalogue
from harness.vm import VM, VMSettings


@dataclass
class VMOptions:
    box: str | None = None  # catalogue name or Vagrant box name; None: the catalogue's default
    driver: str = "auto"  # auto | kvm | qemu
    memory: int = 2048
    cpus: int = 2
    boxes_file: Path | None = None


def make_vm(options: VMOptions, project_dir: Path, log=None,
            catalogue_dir: Path | None = None) -> VM:
    """The VM whose state lives in ``project_dir/.harness``; boxes.yaml is looked up in
    ``catalogue_dir`` (default: the same folder)."""
    log = log or sys.stderr
    catalogue = load_catalogue(options.boxes_file, project_dir=catalogue_dir or project_dir)
    box = catalogue.get(options.box)
    driver, probe = accel.choose_driver(options.driver)
    if probe is not None and not probe.kvm_works:
        print(f"harness: {accel.TCG_WARNING} ({probe.detail})", file=log, flush=True)
    vm = VM(VMSettings(box=box, driver=driver, memory=options.memory, cpus=options.cpus),
            project_dir=project_dir, log=log)
    # Plain `vagrant up` in this folder then picks the same driver.
    (vm.state / "driver").write_text(driver + "\n")
    return vm


def ready_vm(vm: VM, reuse: bool = True) -> VM:
    """Up (or reused), reachable over SSH, with a clean snapshot to come back to.

    A reused VM is first put back to its clean snapshot: whatever ran before (a person, or a
    run that was interrupted in the middle of a crash) leaves nothing behind.
    """
    if reuse and vm.is_running() and vm.has_snapshot():
        vm.say("reusing the running VM from its clean snapshot")
        vm.restore_snapshot(archive_as="before-reuse")
        return vm
    if not (reuse and vm.is_running()):
        vm.up()
    vm.wait_for_ssh()
    if not vm.has_snapshot():
        vm.say("saving a snapshot of the clean, booted kernel")
        vm.save_snapshot()
    return vm
