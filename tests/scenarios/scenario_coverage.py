"""Run by tests/vm/test_module_coverage.py twice, with and without --vm-coverage, beside
modules/llist's own tests: the verdicts must be the same. Two tests here fail on purpose, in
profiled modules: one on its own assertion, one on a kernel oops."""

import pytest

pytestmark = pytest.mark.vm


def test_llist_with_a_wrong_expectation(kmod, dmesg):
    with kmod("modules/llist"):
        pass
    assert "llist: created 6 items" in dmesg  # it makes 5


def test_oops_in_exit(kmod):
    hello = kmod("modules/hello-oops")
    hello.load()
    hello.unload()
