"""The teacher's tests for the llist homework: 10 points."""

import pytest

from harness.kmod import LoadError

pytestmark = pytest.mark.vm
LOAD_TIMEOUT = 40


@pytest.mark.points(2)
def test_builds(student_module):
    student_module.build()


@pytest.mark.points(3)
def test_prints_every_item(student_module, dmesg):
    student_module.load(count=4, timeout=LOAD_TIMEOUT)
    assert len(dmesg.grep(r"llist: birthday \d+/\d+/\d+", regex=True)) == 4
    assert "llist: created 4 items" in dmesg


@pytest.mark.points(3)
def test_frees_every_item_on_unload(student_module, dmesg):
    student_module.load(count=6, timeout=LOAD_TIMEOUT)
    student_module.unload(timeout=LOAD_TIMEOUT)
    assert "llist: freed 6 items" in dmesg


@pytest.mark.points(2)
def test_rejects_a_negative_count(student_module):
    with pytest.raises(LoadError):
        student_module.load(count=-1, timeout=LOAD_TIMEOUT)
