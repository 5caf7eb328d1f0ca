"""The fast paths under emulation, in a real guest: a build on the host in the box's root
filesystem gives the very module an in-guest build gives, and a saved VM resumes without booting.
"""

from __future__ import annotations

import hashlib

import pytest

from harness.build import IN_GUEST, ON_HOST
from harness.cleanstate import ready_vm

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("module_dir", ["modules/hello", "modules/llist"])
def test_host_build_gives_the_same_module_as_the_guest_build(kmod, dmesg, guest, module_dir):
    release = guest.run("uname -r", timeout=30).check().stdout.strip()
    built = {}
    for mode in ("guest", "host"):
        module = kmod(module_dir, build_mode=mode)
        result = module.build(force=True)
        assert result.where == {"guest": IN_GUEST, "host": ON_HOST}[mode]
        vermagic = guest.run(["/sbin/modinfo", "-F", "vermagic", module.ko_path],
                             timeout=30).check().stdout.strip()
        assert vermagic.split()[0] == release
        module.load()
        assert module.is_loaded()
        module.unload()
        ko = result.local_ko[module.name]
        built[mode] = (vermagic, hashlib.sha256(ko.read_bytes()).hexdigest(), result.seconds)
    assert built["host"][0] == built["guest"][0]
    # Same headers, same gcc, same path: kbuild's output is byte for byte the same.
    assert built["host"][1] == built["guest"][1]
    loads = [line for line in dmesg.lines if "Hello World" in line or "llist: created" in line]
    assert len(loads) == 2
    print(f"{module_dir}: in-guest build {built['guest'][2]:.1f} s, host build "
          f"{built['host'][2]:.1f} s, identical .ko {built['host'][1][:16]}")


def test_the_session_builds_on_the_host_by_default(kmod, harness_session):
    hello = kmod("modules/hello")
    hello.build(force=True)
    assert hello.build_result.where == ON_HOST
    assert "on the host" in harness_session.guest.builder.decision


def test_a_build_error_on_the_host_names_the_source_line(kmod, tmp_path):
    (tmp_path / "Makefile").write_text("obj-m += broken.o\n")
    (tmp_path / "broken.c").write_text(
        '#include <linux/module.h>\nMODULE_LICENSE("GPL");\nstatic int __init b_init(void)\n'
        "{\n\treturn undefined_thing;\n}\nmodule_init(b_init);\n")
    broken = kmod(tmp_path, build_mode="host")
    result = broken.build(force=True, check=False)
    assert not result.ok and result.where == ON_HOST
    assert any(d.line == 5 and "undefined_thing" in d.message and d.file.endswith("broken.c")
               for d in result.errors)


def test_a_saved_vm_resumes_from_its_clean_snapshot_without_booting(harness_session, guest):
    vm = harness_session.vm
    harness_session.restore_clean(archive_as="resume-test")
    boot_id = guest.run("cat /proc/sys/kernel/random/boot_id", timeout=30).check().stdout
    vm.power_off()
    assert not vm.is_running()
    assert vm.has_snapshot()
    ready_vm(vm)
    assert vm.is_running()
    # The clean snapshot's memory came back: the same boot, not a new one.
    assert guest.run("cat /proc/sys/kernel/random/boot_id", timeout=30).check().stdout == boot_id


def test_a_saved_vm_resumes_after_its_network_was_removed(harness_session, guest):
    """vagrant-libvirt removes its network when another project destroys the last VM on it;
    the saved VM's snapshot still needs it (and its address, whose DHCP lease went with it)."""
    vm = harness_session.vm
    harness_session.restore_clean(archive_as="network-test")
    boot_id = guest.run("cat /proc/sys/kernel/random/boot_id", timeout=30).check().stdout
    networks = list(vm.surroundings.networks())
    assert networks, "the clean snapshot should have recorded its networks"
    vm.power_off()
    attached = [name for name in networks
                if "connections=" in vm.domain.virsh("net-dumpxml", name).splitlines()[0]]
    if attached:  # another VM is still on it: bring ours back before skipping
        ready_vm(vm)
        pytest.skip(f"another VM is attached to libvirt network(s) {attached}; not removing")
    for name in networks:
        vm.domain.virsh("net-destroy", name)
        vm.domain.virsh("net-undefine", name)
    ready_vm(vm)
    assert set(networks) <= set(vm.domain.virsh("net-list", "--name").split())
    assert guest.run("cat /proc/sys/kernel/random/boot_id", timeout=30).check().stdout == boot_id
