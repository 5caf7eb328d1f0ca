"""The VM on a remote libvirt host, end to end. Runs only when a remote host is given:

    pytest tests/remote --vm-libvirt-host HOST [--vm-libvirt-user U --vm-libvirt-key KEY]
           --vm-driver kvm|qemu --vm-project /tmp/remote-proj --vm-end destroy

(run by hand against this machine's own libvirt over SSH: see the README, 'Beyond one
machine'). Without a remote host the whole file is skipped, and says why.
"""


import pytest

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(
        "not (config.getoption('--vm-libvirt-host') or os.environ.get('HARNESS_LIBVIRT_HOST'))",
        reason="no remote libvirt host given (--vm-libvirt-host or HARNESS_LIBVIRT_HOST)"),
]


def test_hello_on_the_remote_host(kmod, dmesg, harness_session):
    assert harness_session.vm.settings.libvirt_uri.startswith("qemu+ssh://")
    with kmod("modules/hello"):
        pass
    assert "Hello World" in dmesg


@pytest.mark.expect_oops("panic")
def test_a_panic_is_read_from_the_remote_serial_console(kmod):
    kmod("modules/crashy").load(mode="panic")


def test_the_next_test_has_a_clean_kernel(guest):
    tainted = int(guest.run("cat /proc/sys/kernel/tainted").check().stdout)
    assert tainted & ~(4096 | 8192) == 0  # only O (out-of-tree) and E (unsigned) may be set
