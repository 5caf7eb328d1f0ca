"""The teacher's tests for the llist homework: 10 points.

Messages are checked, and so is the kernel's state: the kmem ledger (kmem tracepoints, any
kernel) sees what the module really allocated and freed, so printing the expected lines
without doing the work earns nothing."""

import pytest

from harness.kmod import LoadError

pytestmark = pytest.mark.vm
LOAD_TIMEOUT = 40


@pytest.mark.points(2)
def test_builds(student_module):
    student_module.build()


@pytest.mark.points(3)
def test_prints_every_item(student_module, dmesg, kmem):
    student_module.load(count=4, timeout=LOAD_TIMEOUT)
    assert len(dmesg.grep(r"llist: birthday \d+/\d+/\d+", regex=True)) == 4
    assert "llist: created 4 items" in dmesg
    # The list really exists: the module allocated four items and holds them (kmem ledger).
    assert len(kmem.outstanding(student_module)) >= 4


@pytest.mark.points(3)
def test_frees_every_item_on_unload(student_module, dmesg, kmem):
    student_module.load(count=6, timeout=LOAD_TIMEOUT)
    student_module.unload(timeout=LOAD_TIMEOUT)
    assert "llist: freed 6 items" in dmesg
    # Checked, not taken on its word: everything it allocated was freed.
    kmem.assert_freed(student_module)


@pytest.mark.points(2)
def test_rejects_a_negative_count(student_module):
    with pytest.raises(LoadError):
        student_module.load(count=-1, timeout=LOAD_TIMEOUT)
