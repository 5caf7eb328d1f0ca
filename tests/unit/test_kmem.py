"""The kmem ledger's pairing and attribution, on trace text as the guest prints it."""

from __future__ import annotations

import subprocess

import pytest

from harness import kmem
from harness.kmem import LIVE_ONLY_AWK, ModuleSpan, describe, parse_trace
from harness.transport import CommandResult

TRACE = """\
 insmod-1 [000] ..... 1.0: kmalloc: call_site=llist_init+0x5a/0x1000 [llist] ptr=00000000aaaa bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
 insmod-1 [000] ..... 1.1: kmalloc: call_site=llist_init+0x5a/0x1000 [llist] ptr=00000000bbbb bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
 kworker-9 [001] ..... 1.2: kmem_cache_alloc: call_site=0xffffffffc0a2b05a ptr=00000000cccc bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false
 kworker-9 [001] ..... 1.3: kmalloc: call_site=virtnet_poll+0x10/0x200 [virtio_net] ptr=00000000dddd bytes_req=8 bytes_alloc=8 gfp_flags=GFP_ATOMIC node=-1 accounted=false
 rmmod-2 [001] ..... 2.0: kfree: call_site=llist_exit+0x20/0x30 [llist] ptr=00000000aaaa
 swapper-0 [000] ..... 2.1: kfree: call_site=rcu_do_batch+0x1/0x2 ptr=00000000dddd
 insmod-3 [000] ..... 3.0: kmalloc: call_site=llist_init+0x5a/0x1000 [llist] ptr=00000000aaaa bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
""" # noqa: E501


def test_allocations_pair_with_frees_by_pointer_and_a_reused_pointer_is_new():
    live, lost = parse_trace(TRACE)
    assert lost == 0
    assert sorted(live) == ["00000000aaaa", "00000000bbbb", "00000000cccc"]
    assert live["00000000aaaa"].size == 32


def _guest_awk(tmp_path, ledger: str, check: str = "", mark: str = "") -> str:
    """The read script's awk as the guest runs it: the check instance's trace, then the
    ledger's."""
    (tmp_path / "check").write_text(check)
    (tmp_path / "ledger").write_text(ledger)
    return subprocess.run(["awk", "-v", f"mark={mark}", LIVE_ONLY_AWK, str(tmp_path / "check"),
                           str(tmp_path / "ledger")],
                          capture_output=True, text=True, check=True).stdout


def test_the_guest_side_filter_pairs_the_same_way(tmp_path):
    out = _guest_awk(tmp_path, TRACE + "CPU:1 [LOST 3 EVENTS]\n")
    live, lost = parse_trace(out)
    assert sorted(live) == ["00000000aaaa", "00000000bbbb", "00000000cccc"] and lost == 3
    assert f"{kmem.STATE} missing 0" in out and f"{kmem.STATE} marked 0" in out


def test_allocations_the_check_saw_and_the_ledger_lacks_are_counted(tmp_path):
    mark = "harness-kmem-start-0123"
    ledger = f" sh-1 [000] ..... 0.5: tracing_mark_write: {mark}\n" + TRACE
    allocations = [line for line in TRACE.splitlines() if " kmalloc: " in line
                   or " kmem_cache_alloc: " in line]
    # Everything the ledger has, seen by the check too: nothing missing.
    assert f"{kmem.STATE} missing 0\n{kmem.STATE} marked 1" in _guest_awk(
        tmp_path, ledger, "\n".join(allocations) + "\n", mark)
    # Two allocations made while the ledger was switched off: only the check has them.
    gap = ("insmod-4 [000] ..... 4.0: kmalloc: call_site=llist_init+0x5a/0x1000 [llist] "
           "ptr=00000000eeee bytes_req=32\n"
           "insmod-4 [000] ..... 4.1: kmalloc: call_site=llist_init+0x5a/0x1000 [llist] "
           "ptr=00000000ffff bytes_req=32\n")
    out = _guest_awk(tmp_path, ledger, "\n".join(allocations) + "\n" + gap, mark)
    assert f"{kmem.STATE} missing 2" in out
    assert ("it was switched off for a while: 2 allocation(s) from the modules area that the "
            "check instance recorded are missing from its records") in kmem.interruptions(out)


def test_call_sites_belong_to_a_module_by_name_or_by_address():
    span = ModuleSpan("llist", 0xFFFFFFFFC0A2B000, 0x4000)
    assert span.holds("llist_init+0x5a/0x1000 [llist]")
    assert span.holds("0xffffffffc0a2b05a")  # printed once the module is gone
    assert not span.holds("virtnet_poll+0x10/0x200 [virtio_net]")
    assert not span.holds("0xffffffffc1000000")
    assert span.frame("llist_init+0x5a/0x1000 [llist]") == ("llist_init", 0x5A)


def test_a_leak_is_described_per_call_site():
    live, _ = parse_trace(TRACE)
    text = describe("llist", [a for a in live.values() if "llist" in a.call_site])
    assert text == ("memory leak in llist_init: 2 object(s), 64 bytes, allocated at "
                    "llist_init+0x5a/0x1000 [llist]")


@pytest.mark.parametrize(("enable", "ready"), [(None, False), ("0", False), ("1", True)])
def test_the_ledger_is_set_up_unless_its_events_are_enabled(tmp_path, enable, ready):
    # The check instance's last event is what the set-up enables last.
    instance = tmp_path / "harness-kmem-check"
    event = instance / "events" / "kmem" / kmem.ALLOC_EVENTS[-1]
    if enable is not None:
        event.mkdir(parents=True)
        (event / "enable").write_text(enable + "\n")
    check = kmem._READY.replace(kmem.CHECK_INSTANCE, str(instance))
    done = subprocess.run(["sh", "-c", f"set -e\nif ! {check}; then echo set up; fi"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == ("" if ready else "set up\n")


def _state(**changes: str) -> str:
    """The state lines a read script prints after an uninterrupted recording, with changes."""
    state = {"missing": "0", "marked": "1", "tracing_on": "1"}
    state |= {f"enable:{event}": "1" for event in kmem.EVENT_FILTERS}
    state |= {f"filter:{event}": condition for event, condition in kmem.EVENT_FILTERS.items()}
    state |= changes
    return "".join(f"{kmem.STATE} {key} {value}\n" for key, value in state.items())


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"tracing_on": "0"}, "its recording was switched off (tracing_on is 0)"),
    ({"enable:kmalloc": "0"}, "the kmem:kmalloc event was disabled"),
    ({"filter:kfree": "none"}, "the kmem:kfree event's filter was changed to 'none'"),
    ({"marked": "0"}, "its records were cleared"),
    ({"missing": "4"}, "it was switched off for a while: 4 allocation(s) from the modules "
                       "area that the check instance recorded are missing from its records"),
])
def test_an_interrupted_recording_is_never_a_pass(changes, problem):
    assert kmem.interruptions(_state(**changes)) == ([problem] if problem else [])
    ledger = kmem.KmemLedger(transport=None, started=True)  # type: ignore[arg-type]
    result = CommandResult("read", 0, TRACE + _state(**changes), "", 0.1)
    if problem is None:
        assert ledger.live_from(result)
    else:
        with pytest.raises(kmem.LedgerError, match="recording was interrupted during the test"):
            ledger.live_from(result)
