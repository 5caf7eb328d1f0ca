import json
import shutil

import pytest

from harness import accel


def test_explicit_drivers_skip_the_probe():
    assert accel.choose_driver("kvm") == ("kvm", None)
    assert accel.choose_driver("qemu") == ("qemu", None)
    with pytest.raises(ValueError):
        accel.choose_driver("xen")


@pytest.mark.skipif(shutil.which(accel.QEMU) is None, reason="qemu-system-x86_64 not installed")
def test_guest_code_really_runs_under_tcg():
    ok, detail = accel.run_guest("tcg", kernel=None, timeout=20)
    assert ok, detail


@pytest.mark.skipif(shutil.which(accel.QEMU) is None, reason="qemu-system-x86_64 not installed")
def test_a_kernel_that_does_not_boot_is_reported_as_such(tmp_path):
    """The probe must say no, with the reason, when the guest never gets there (here: a file
    that is no kernel): a probe that always said yes would pick KVM where it hangs."""
    not_a_kernel = tmp_path / "vmlinuz-broken"
    not_a_kernel.write_bytes(b"\0" * 4096)
    ok, detail = accel.run_guest("tcg", kernel=not_a_kernel, timeout=10)
    assert not ok
    assert "vmlinuz-broken did not boot under tcg" in detail


def test_a_cached_probe_is_reused_only_on_the_same_boot_and_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HARNESS_PROBE_KERNEL", str(tmp_path / "vmlinuz-a"))
    monkeypatch.setattr(accel, "run_guest", lambda *a, **k: (False, "probed afresh"))
    first = accel.probe()
    cached = json.loads(accel.accel_probe_file().read_text())
    assert "vmlinuz-a" in cached["key"]
    # What the cache says is what a probe on the same boot and kernel answers.
    accel.accel_probe_file().write_text(json.dumps({**cached, "detail": "from the cache"}))
    assert accel.probe().detail == "from the cache"
    assert accel.probe(use_cache=False).detail == first.detail
    monkeypatch.setenv("HARNESS_PROBE_KERNEL", str(tmp_path / "vmlinuz-b"))
    assert accel.probe().detail != "from the cache"  # another kernel: probed again
