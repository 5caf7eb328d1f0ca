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


def test_the_guest_side_filter_pairs_the_same_way():
    out = subprocess.run(["awk", LIVE_ONLY_AWK], input=TRACE + "CPU:1 [LOST 3 EVENTS]\n",
                         capture_output=True, text=True, check=True).stdout
    live, lost = parse_trace(out)
    assert sorted(live) == ["00000000aaaa", "00000000bbbb", "00000000cccc"] and lost == 3


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
    state = {"checked": "6", "allocations": "6", "marked": "1", "tracing_on": "1"}
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
    ({"checked": "10"}, "it was switched off for a while: 4 allocation(s) from the modules "
                        "area are missing from its records"),
    ({"checked": "3"}, None),  # the check instance counts a shorter window: never a problem
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
