"""The allocation ledger on the stock kernel: what a module allocated and did not free, from the
kmem tracepoints, pinned on the module's source line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.kmem import MemoryLeak

pytestmark = pytest.mark.vm


def test_the_ledger_sees_a_module_allocate_and_free(kmod, kmem):
    llist = kmod("../../modules/llist")
    llist.load(count=5)
    live = kmem.outstanding(llist)
    assert len(live) == 5
    assert {a.size for a in live} == {32}  # struct birthday: 3 ints, padding, a list_head
    assert all("llist_init" in a.call_site or a.call_site.startswith("0x") for a in live)
    llist.unload()
    assert kmem.outstanding(llist) == []
    kmem.assert_freed(llist)


# The per-test leak check sees the same leak and fails the test: here it is the point.
@pytest.mark.expect_oops("^memory leak in leaky_init$")
def test_a_leak_names_the_allocating_line(kmod, kmem):
    leaky = kmod("modules/leaky")
    leaky.load(count=10, keep_freeing=3)
    leaky.unload()
    leaked = kmem.outstanding(leaky)
    assert len(leaked) == 7 and {a.size for a in leaked} == {128}
    with pytest.raises(MemoryLeak) as failure:
        kmem.assert_freed(leaky)
    message = str(failure.value)
    assert message.startswith("memory leak in leaky_init: 7 object(s), 896 bytes, allocated at "
                              "leaky_init+0x")
    assert "leaky.c:21: objects[i] = kmalloc(128, GFP_KERNEL);" in message


def test_a_module_that_frees_everything_has_no_leak(kmod, kmem):
    leaky = kmod("modules/leaky")
    leaky.load(count=10, keep_freeing=10)
    leaky.unload()
    kmem.assert_freed(leaky)


def test_harness_run_reports_a_leak_with_its_line():
    """`harness run` checks leaks after its rmmod too (the same leak check as the tests)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "tests/vm/modules/leaky",
         "--param", "count=4", "--param", "keep_freeing=1"],
        cwd=root, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "memory leak in leaky_init" in proc.stderr
    assert "3 object(s), 384 bytes allocated by module leaky" in proc.stderr
    assert "leaky.c:21: objects[i] = kmalloc(128, GFP_KERNEL);" in proc.stderr
