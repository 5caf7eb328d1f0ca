"""A module author's kernel matrix (run by tests/vm/test_kernel_matrix.py with --vm-box a,b):
the fixed classdev loads and registers its device on every kernel, the version written against
5.10's API only builds before 6.4, and a test that needs 6.4 says so with vm_kernel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vm
DEVICE = "/sys/class/harness_classdev/harness_classdev0"


def test_classdev_registers_its_device(kmod, guest, dmesg):
    module = kmod("modules/classdev")
    module.load()
    assert guest.exists(DEVICE)
    dmesg.expect("classdev: created harness_classdev0")
    module.unload()
    assert not guest.exists(DEVICE)


def test_classdev_written_for_5_10(kmod, guest):
    module = kmod("modules/classdev-5.10")
    module.load()
    assert guest.exists(DEVICE)
    module.unload()


@pytest.mark.vm_kernel(min="6.4")
def test_class_create_takes_only_a_name(guest):
    assert guest.kernel_version >= (6, 4)
