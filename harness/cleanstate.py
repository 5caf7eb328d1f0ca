"""The clean snapshot: the one idea every run's speed and every test's isolation rest on.

A VM is booted once; before its clean snapshot is taken, the guest gets what every test would
otherwise set up again (the kmem ledger's tracing instances, quicker SSH logins). The snapshot
is what each test's clean kernel comes back to, and what a later run resumes instead of
booting, as long as the VM was made with the same settings and the snapshot holds the same
things (:func:`settings_fingerprint`); otherwise the VM is replaced. :class:`harness.vm.VM`
owns the primitives (save, restore, the libvirt domain); this module owns what the clean state
is and when it is made, resumed or thrown away.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness import kmem
from harness.boxbuild import BUILDER_VERSION, QUICK_LOGIN_CONFIG, QUICK_LOGIN_FILE
from harness.errors import VMError

if TYPE_CHECKING:
    from harness.vm import VM

# Quicker SSH logins on the harness's own boxes (a known sshd): a test needs new logins after
# each revert, and under emulation PAM's session modules (logind, motd) and sshd's re-exec of
# itself for each connection make one take 1-2 s instead of about 0.5. The drop-in sorts before
# the distribution's (the first value sshd reads wins); -r is kept only if this sshd takes it.
QUICK_LOGIN_SCRIPT = (
    # A box built with them already (harness.boxbuild) has nothing to do: no sshd restart.
    f"grep -qx 'UsePAM no' {QUICK_LOGIN_FILE} 2>/dev/null && "
    "grep -qx 'SSHD_OPTS=-r' /etc/default/ssh 2>/dev/null && echo already && exit 0; "
    "printf '" + QUICK_LOGIN_CONFIG.replace("\n", "\\n") + "' > "
    f"{QUICK_LOGIN_FILE} && "
    "if sshd -t -r 2>/dev/null && [ -f /etc/default/ssh ]; then "
    "sed -i 's/^SSHD_OPTS=.*/SSHD_OPTS=-r/' /etc/default/ssh; fi && "
    "sshd -t && systemctl restart ssh"  # the unit's KillMode=process: sessions stay
)
# What the clean snapshot holds besides the booted guest (save_clean_snapshot makes it); a
# saved VM whose snapshot holds something else is replaced, not resumed.
# The boot finished first: SSH answers before systemd is done (sshd starts early), and a
# snapshot taken then would make every test after a revert share its CPUs with the rest of
# the boot. "degraded" is finished too; a guest without systemd's verb just goes on.
BOOT_FINISHED = "systemctl is-system-running --wait >/dev/null 2>&1; true"
SNAPSHOT_CONTENTS = (f"boot finished; kmem ledger {kmem.SET_UP_DIGEST} events enabled, "
                     "recording off; "
                     f"quick logins {hashlib.sha256(QUICK_LOGIN_SCRIPT.encode()).hexdigest()[:8]}")
FINGERPRINT_FILE = "vm-settings.json"


def settings_fingerprint(vm: VM) -> dict[str, object]:
    """What a saved VM must have been made with to be resumed: box (and its recipe), driver,
    memory, CPUs, and what its clean snapshot holds."""
    s = vm.settings
    recipe = s.box.recipe.digest(BUILDER_VERSION) if s.box.recipe is not None else None
    return {"box": s.box.vagrant_box, "recipe": recipe, "driver": s.driver,
            "memory": s.memory, "cpus": s.cpus, "snapshot": SNAPSHOT_CONTENTS,
            "boot": "direct" if s.direct_boot else "bootloader"}


def recorded_fingerprint(vm: VM) -> dict[str, object] | None:
    try:
        return json.loads(_fingerprint_file(vm).read_text())
    except (FileNotFoundError, ValueError):
        return None


def record_fingerprint(vm: VM) -> None:
    _fingerprint_file(vm).write_text(json.dumps(settings_fingerprint(vm)) + "\n")


def _fingerprint_file(vm: VM) -> Path:
    return vm.state / FINGERPRINT_FILE


def quicken_logins(vm: VM) -> None:
    """A quicker sshd on the harness's own boxes (before the clean snapshot: every revert
    has it); other boxes keep their sshd as it is."""
    if vm.settings.box.recipe is None:
        return
    done = vm.transport().run(QUICK_LOGIN_SCRIPT, sudo=True, timeout=60).check()
    if done.stdout.strip() == "already":
        return
    vm.close()
    vm.wait_for_ssh(timeout=60)  # a restarted sshd takes new logins a moment later


def save_clean_snapshot(vm: VM) -> None:
    """The clean snapshot of a finished boot, with what every test would otherwise set up
    again first (:data:`SNAPSHOT_CONTENTS`): the kmem ledger's tracing instances, their events
    enabled, and quicker SSH logins."""
    vm.transport().run(BOOT_FINISHED, sudo=True, timeout=600)
    kmem.prepare_guest(vm.transport())
    quicken_logins(vm)
    vm.save_snapshot()


def ready_vm(vm: VM, reuse: bool = True) -> VM:
    """Up (or reused, or resumed), reachable over SSH, with a clean snapshot to come back to.

    A VM that exists with a clean snapshot (running, or powered off by the end of an earlier run)
    is reverted to it: that resumes the booted kernel from its saved memory in seconds instead of
    booting, and whatever ran before (a person, or a run interrupted in the middle of a crash)
    leaves nothing behind. A VM made with other settings (box, recipe, driver, size, snapshot
    contents) is replaced.
    """
    recorded = recorded_fingerprint(vm)
    if vm.domain.id and recorded is not None and recorded != settings_fingerprint(vm):
        vm.say(f"the existing VM was made with other settings ({recorded}); replacing it")
        vm.destroy()
    if reuse and vm.has_snapshot():
        running = vm.is_running()
        vm.say("reusing the running VM from its clean snapshot" if running
               else "resuming the saved VM from its clean snapshot (no boot)")
        try:
            seconds = vm.restore_snapshot(archive_as="before-reuse")
            vm.say(f"guest ready in {seconds:.1f} s")
            record_fingerprint(vm)
            return vm
        except VMError as err:
            vm.say(f"could not resume it ({err}); making a new VM")
            vm.destroy()
    if not (reuse and vm.is_running()):
        vm.up()
    vm.wait_for_ssh()
    vm.apply_network_policy()  # a running VM that was reused as it is
    record_fingerprint(vm)
    if not vm.has_snapshot():
        vm.say("saving a snapshot of the clean, booted kernel")
        save_clean_snapshot(vm)
    return vm
