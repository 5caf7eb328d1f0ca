"""Run by tests/vm/test_reports.py in its own pytest session: two tests here fail on purpose.

The blog's scenario (hello with a NULL write in its exit function) and a panic in init must
fail with a symbolized report; the test after each must pass on a clean kernel.
"""

import pytest

pytestmark = pytest.mark.vm


def test_blog_null_write_in_exit(kmod, dmesg):
    hello = kmod("modules/hello-oops")
    hello.load()
    assert "Hello World" in dmesg
    hello.unload()


def test_after_the_oops(kmod, dmesg, guest):
    assert guest.run("cat /proc/sys/kernel/tainted").stdout.strip() == "0"
    hello = kmod("modules/hello")
    hello.load()
    hello.unload()
    assert "Goodbye, cruel world, I'm leaving you today" in dmesg


def test_panic_in_init(kmod):
    kmod("modules/crashy").load(mode="panic")


def test_after_the_panic(kmod, dmesg, guest):
    assert guest.run("cat /proc/sys/kernel/tainted").stdout.strip() == "0"
    hello = kmod("modules/hello")
    hello.load()
    hello.unload()
    assert "Hello World" in dmesg
