import shutil

import pytest

from harness import accel


def test_the_probe_boot_sector_is_a_valid_mbr():
    assert len(accel.BOOT_SECTOR) == 512 and accel.BOOT_SECTOR.endswith(b"\x55\xaa")


def test_explicit_drivers_skip_the_probe():
    assert accel.choose_driver("kvm") == ("kvm", None)
    assert accel.choose_driver("qemu") == ("qemu", None)
    with pytest.raises(ValueError):
        accel.choose_driver("xen")


@pytest.mark.skipif(shutil.which(accel.QEMU) is None, reason="qemu-system-x86_64 not installed")
def test_guest_code_really_runs_under_tcg():
    ok, detail = accel.run_guest("tcg", kernel=None, timeout=20)
    assert ok, detail
