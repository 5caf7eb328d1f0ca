"""Per-test leak checks without a VM: kmemleak's report parsed, kept to the test's modules,
grouped by allocating site, and failing the test run like a crash."""

from __future__ import annotations

import pytest
from fakeguest import scripted_session

from harness import leaks, testrun
from harness.kmem import ModuleSpan
from harness.leaks import KmemleakCheck, parse_kmemleak

BASE = 0xFFFFFFFFC0068000


def unreferenced(size: int, *frames: str) -> str:
    lines = [f"unreferenced object 0xffff888004a1c{size:03x} (size {size}):",
             '  comm "insmod", pid 312, jiffies 4294937516 (age 20.504s)',
             "  hex dump (first 32 bytes):",
             "    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk",
             "  backtrace:"]
    lines += [f"    [<{0:016x}>] {frame}" for frame in frames]
    return "\n".join(lines) + "\n"


# Two objects of the unloaded module (bare addresses), one of another loaded module, one of the
# core kernel alone: only the first three are anybody's test's.
KMEMLEAK = (
    unreferenced(128, "kmalloc_trace+0x26/0x90", f"{BASE + 0x5e:#x}", "do_one_initcall+0x5f/0x300")
    + unreferenced(128, "kmalloc_trace+0x26/0x90", f"{BASE + 0x5e:#x}", "do_init_module+0x4a/0x1f0")
    + unreferenced(64, "__kmalloc+0x49/0x120", "other_probe+0x12/0x40 [other]", "bus_probe+0x1/0x2")
    + unreferenced(32, "kmem_cache_alloc+0x1/0x2", "alloc_netdev_mqs+0x50/0x400")
)


def start_now(check, transport) -> None:
    """What a module load does for the check, in a command of its own."""
    script = check.start_script()
    if script:
        result = transport.run(script, sudo=True, timeout=120)
        check.started(None if result.ok else (result.stderr or result.stdout).strip())


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(leaks, "KMEMLEAK_MIN_AGE_S", -1.0)
    monkeypatch.setattr(testrun, "PANIC_SETTLE_S", 0)


def test_kmemleak_objects_are_read_with_their_backtraces():
    objects = parse_kmemleak(KMEMLEAK)
    assert [o.size for o in objects] == [128, 128, 64, 32]
    assert objects[0].backtrace == ("kmalloc_trace+0x26/0x90", f"{BASE + 0x5e:#x}",
                                    "do_one_initcall+0x5f/0x300")
    assert objects[2].backtrace[1] == "other_probe+0x12/0x40 [other]"


def test_only_objects_allocated_by_the_tests_modules_are_findings(tmp_path):
    session, transport, _ = scripted_session(tmp_path)
    transport.kmemleak = KMEMLEAK
    check = KmemleakCheck(transport)
    start_now(check, transport)
    check.remember(ModuleSpan("leaky", BASE, 0x3000, {".text": BASE}))
    reports = check.findings()
    assert len(reports) == 1  # the two objects share their allocating site
    assert reports[0].kind == "memory leak" and reports[0].module == "leaky"
    assert "2 object(s), 256 bytes allocated by module leaky" in reports[0].lines[0]
    assert "echo clear > /sys/kernel/debug/kmemleak" in transport.commands[0]


def test_a_leak_fails_the_test_and_can_be_expected(tmp_path):
    session, transport, _ = scripted_session(tmp_path)
    transport.kmemleak = KMEMLEAK
    session.leak_check_mode = "auto"
    run = session.new_test("leaks")
    assert isinstance(run.leak_check, KmemleakCheck)  # the kernel has kmemleak
    start_now(run.leak_check, transport)  # what loading a module does
    run.leak_check.remember(ModuleSpan("other", BASE + 0x10000, 0x2000))
    verdict = run.finish()
    assert verdict.failed
    assert [r.title for r in verdict.reports] == ["memory leak in other_probe"]
    assert run.watch.leak_check is None and run.leak_check is None  # nothing carries over

    expected = session.new_test("expects a leak", expect_oops=["memory leak"])
    start_now(expected.leak_check, transport)
    expected.leak_check.remember(ModuleSpan("other", BASE + 0x10000, 0x2000))
    assert not expected.finish().failed


def test_without_kmemleak_auto_takes_the_ledger_and_off_takes_nothing(tmp_path):
    session, transport, _ = scripted_session(tmp_path)
    session.leak_check_mode = "auto"
    assert isinstance(session.new_test("a").leak_check, leaks.LedgerCheck)
    session.leak_check_mode = "off"
    assert session.new_test("b").leak_check is None
    session.leak_check_mode = "kmemleak"
    session._kernel_has_kmemleak = None
    with pytest.raises(leaks.ConfigurationError, match="debian-12-debug"):
        session.new_test("c")


def test_a_test_that_loads_no_module_costs_no_leak_check_command(tmp_path):
    session, transport, _ = scripted_session(tmp_path)
    transport.kmemleak = KMEMLEAK
    session.leak_check_mode = "auto"
    session.new_test("warm").finish()  # asks once whether the kernel has kmemleak
    before = len(transport.commands)
    assert not session.new_test("quiet").finish().failed
    assert not [c for c in transport.commands[before:] if "kmemleak" in c]


def test_under_emulation_auto_takes_the_ledger_even_where_kmemleak_is(tmp_path):
    session, transport, vm = scripted_session(tmp_path)
    transport.kmemleak = KMEMLEAK
    session.leak_check_mode = "auto"
    vm.settings.driver = "qemu"
    assert isinstance(session.new_test("tcg").leak_check, leaks.LedgerCheck)
    session.leak_check_mode = "kmemleak"
    assert isinstance(session.new_test("asked").leak_check, KmemleakCheck)
    vm.settings.driver, session.leak_check_mode = "kvm", "auto"
    assert isinstance(session.new_test("kvm").leak_check, KmemleakCheck)
