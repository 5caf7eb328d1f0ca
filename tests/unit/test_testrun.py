"""The verdict after a test and the way back to a clean kernel, without a VM: the real
HarnessSession and TestRun over a scripted guest (tests/unit/fakeguest.py)."""

from __future__ import annotations

import pytest
from fakeguest import console, scripted_session

from harness import testrun
from harness.errors import GuestUnreachable, TimeLimitExceeded, VMError


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
    monkeypatch.setattr(testrun, "PANIC_SETTLE_S", 0)


@pytest.fixture
def scripted(tmp_path):
    return scripted_session(tmp_path)


def test_a_quiet_test_passes_and_keeps_exactly_its_own_lines(scripted):
    session, guest, _ = scripted
    guest.log("[    1.0] before the test")
    run = session.new_test("t")
    guest.log("[    2.0] Hello World")
    verdict = run.finish()
    assert not verdict.failed and not verdict.kernel_broken
    assert [line.split("] ")[1] for line in verdict.kernel_lines] == ["Hello World"]


def test_an_oops_during_the_test_fails_it_with_the_title(scripted):
    session, guest, _ = scripted
    run = session.new_test("t")
    guest.log(*console("null_exit"))
    verdict = run.finish()
    assert verdict.failed and verdict.kernel_broken
    assert [r.title for r in verdict.reports] == [
        "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write"]
    assert "BUG: unable to handle kernel NULL pointer dereference" in verdict.message()


def test_new_taint_fails_the_test_but_out_of_tree_taint_does_not(scripted):
    session, guest, _ = scripted
    guest.taint = 0
    run = session.new_test("t")
    guest.taint = 4096 | 8192  # O and E: loading any out-of-tree, unsigned module
    assert not run.finish().failed
    run = session.new_test("t2")
    guest.taint |= 512  # W: a warning
    verdict = run.finish()
    assert verdict.failed and "W" in verdict.message()


def test_an_expected_oops_turns_the_verdict_around(scripted):
    session, guest, _ = scripted
    run = session.new_test("t", expect_oops=["BUG: unable to handle kernel NULL pointer"])
    guest.log(*console("null_exit"))
    verdict = run.finish()
    assert verdict.expectation_met and not verdict.failed and verdict.kernel_broken
    missing = session.new_test("t2", expect_oops=["kernel BUG"]).finish()
    assert missing.failed and "no crash report at all" in missing.message()


def test_a_guest_that_died_is_judged_from_its_serial_console(scripted):
    session, guest, vm = scripted
    run = session.new_test("t")
    vm.serial += "[   50.0] Kernel panic - not syncing: llist: giving up\n"
    guest.dead = True
    verdict = run.finish(GuestUnreachable("the guest died during `insmod`"))
    assert verdict.guest_died and verdict.kernel_broken
    assert [r.title for r in verdict.reports] == ["kernel panic: llist: giving up"]


def test_a_test_past_its_time_limit_is_a_hang(scripted):
    session, _, _ = scripted
    run = session.new_test("t")
    verdict = run.finish(TimeLimitExceeded("test stopped after 30 s (time_limits.test_s)"))
    assert verdict.hung == "test stopped after 30 s (time_limits.test_s)"
    assert verdict.kernel_broken and verdict.failed


def test_a_failed_taint_read_is_a_cleanup_note_not_a_dead_guest(scripted):
    session, guest, _ = scripted
    run = session.new_test("t")
    guest.taint_fails = True
    verdict = run.finish()
    assert verdict.guest_died is None and not verdict.failed
    assert "could not read the kernel's taint" in verdict.cleanup_errors[0]


def test_a_clean_kernel_comes_back_by_revert_then_reboot_then_a_new_vm(scripted):
    session, _, vm = scripted
    assert session.restore_clean("t").startswith("restored a clean kernel by snapshot revert")
    vm.failing = {"revert"}
    assert "by reboot" in session.restore_clean("t")
    vm.failing = {"revert", "reboot"}
    assert "by new VM" in session.restore_clean("t")
    vm.failing = {"revert", "reboot", "new VM"}
    vm.steps.clear()
    with pytest.raises(VMError) as failure:
        session.restore_clean("t")
    assert "snapshot revert: revert failed" in str(failure.value)
    assert "new VM: new VM failed" in str(failure.value)
    assert vm.steps == ["revert", "reboot", "destroy", "new VM"]


def test_the_next_student_gets_a_clean_kernel_but_the_same_student_does_not(scripted):
    session, _, vm = scripted
    session.new_test("a1")
    assert session.isolate("alice", "a1") is None  # the first key: nothing ran before
    session.new_test("a2")
    assert session.isolate("alice", "a2") is None
    assert session.isolate("bob", "b1").startswith("restored a clean kernel")
    assert vm.steps == ["revert"]


def test_an_expected_oops_can_be_pinned_on_its_source_line(scripted):
    session, guest, _ = scripted
    run = session.new_test("t", expect_oops=["BUG: unable to handle kernel NULL pointer"],
                           expect_source="*p = 0;")
    guest.log(*console("null_exit"))
    verdict = run.finish()
    assert verdict.failed  # no source line at hand: the expectation is not met
    verdict.reports[0].source_line = "\t*p = 0;"
    assert verdict.expectation_met and not verdict.failed
    verdict.reports[0].source_line = "\tkfree(p);"
    assert verdict.failed
    assert "at the source line '*p = 0;', got: BUG: unable to handle kernel NULL pointer " \
           "dereference in crashy_null_write" in verdict.message()


def test_old_code_reaching_for_the_runs_session_is_told_how_to_migrate(scripted):
    session, _, _ = scripted
    run = session.new_test("t")
    assert run.box == "debian-12" and run.guest is session.guest
    with pytest.raises(AttributeError, match="TestRun.session is gone.*run.services"):
        run.session  # noqa: B018
