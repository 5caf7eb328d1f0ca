"""Crashes caught in a real guest: each kind of bug is reported, then the kernel is clean again.

Each ``expect_oops`` test requires the crash (it fails when none is reported); the test after
it checks that the next test starts on a clean kernel.
"""

from __future__ import annotations

import pytest

from harness.kmod import KernelCrashed, ModuleHung
from harness.oops.detect import detect

pytestmark = pytest.mark.vm

CRASHY = "modules/crashy"
NULL_DEREF = "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write"


def _assert_clean_kernel(guest):
    assert guest.run("cat /proc/sys/kernel/tainted").stdout.strip() == "0"
    assert "crashy" not in guest.run("cat /proc/modules").stdout


@pytest.mark.expect_oops(NULL_DEREF)
def test_null_dereference_in_init(kmod):
    with pytest.raises(KernelCrashed):
        kmod(CRASHY).load(mode="null_init")


@pytest.mark.expect_oops(NULL_DEREF)
def test_null_dereference_in_exit(kmod):
    crashy = kmod(CRASHY)
    crashy.load(mode="null_exit")
    with pytest.raises(KernelCrashed):
        crashy.unload()


def test_after_null_dereference_the_kernel_is_clean(guest):
    _assert_clean_kernel(guest)


@pytest.mark.expect_oops("WARNING in crashy_init")
def test_warn_on(kmod):
    kmod(CRASHY).load(mode="warn")


# The logs a user would paste into `harness oops`: what the guest's own tools print.
SYSTEM_LOG_COMMANDS = ("dmesg", "dmesg -T", "dmesg -x", "dmesg -H", "dmesg -d",
                       "journalctl -k -b --no-pager",
                       "journalctl -k -b --no-pager -o short-iso",
                       "journalctl -k -b --no-pager -o short-precise",
                       "journalctl -k -b --no-pager -o short-monotonic")


@pytest.mark.expect_oops("WARNING in crashy_init")
def test_the_guests_system_logs_give_the_same_report(kmod, guest):
    kmod(CRASHY).load(mode="warn")
    for command in SYSTEM_LOG_COMMANDS:
        log = guest.check_output(command, sudo=True)
        reports = [(r.title, str(r.module_frame)) for r in detect(log)
                   if r.title == "WARNING in crashy_init"]
        assert reports and reports[0][1].endswith("[crashy]"), f"{command}:\n{log[-3000:]}"


@pytest.mark.expect_oops("kernel BUG in crashy_init")
def test_bug_on(kmod):
    with pytest.raises(KernelCrashed):
        kmod(CRASHY).load(mode="bug")


@pytest.mark.expect_oops(r"BUG: corrupted list in crashy_list_corrupt|kernel BUG in crashy_list")
def test_list_corruption(kmod):
    with pytest.raises(KernelCrashed):
        kmod(CRASHY).load(mode="list")


# This kernel lacks DEBUG_ATOMIC_SLEEP, so the sleep is caught by the scheduler instead.
@pytest.mark.expect_oops(r"BUG: (?:scheduling while atomic|sleeping function called from "
                         r"invalid context) in crashy_sleep_in_atomic")
def test_sleeping_in_atomic_context(kmod):
    kmod(CRASHY).load(mode="atomic_sleep")


@pytest.mark.expect_oops("WARNING: refcount bug in crashy_refcount_underflow")
def test_refcount_underflow(kmod):
    kmod(CRASHY).load(mode="refcount")


@pytest.mark.expect_oops("divide error in crashy_divide")
def test_divide_by_zero(kmod):
    with pytest.raises(KernelCrashed):
        kmod(CRASHY).load(mode="divzero")


# Whichever watchdog fires first: the soft-lockup detector or RCU's stall detector.
@pytest.mark.expect_oops(r"(?:BUG: soft lockup|INFO: rcu detected stall) in crashy_")
def test_endless_loop_is_bounded_and_reported(kmod):
    with pytest.raises(ModuleHung):
        kmod(CRASHY).load(mode="loop", timeout=45)


def test_after_all_that_the_kernel_is_clean(guest, kmod, dmesg):
    _assert_clean_kernel(guest)
    hello = kmod("modules/hello")
    hello.load()
    hello.unload()
    assert "Hello World" in dmesg
