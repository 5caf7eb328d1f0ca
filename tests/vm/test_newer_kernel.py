"""The newer kernel of the catalogue (6.12, from bookworm's own archive), whose crash reports
differ in form from 6.1's ("Oops: Oops: 0002 [#1]" after a NULL dereference, "Oops: invalid
opcode: 0000" after BUG_ON): the module builds against its headers, and the titles, the module
frames and the source lines hold. Its whole serial capture of tests/vm/test_crashes.py is kept
as tests/unit/logs/crashy_6.12.console.
"""

from __future__ import annotations

import re

import pytest

from harness.kmod import KernelCrashed
from harness.plugin import test_run_of

pytestmark = [pytest.mark.vm, pytest.mark.vm_box("debian-12-k6.12")]

CRASHY = "modules/crashy"
NULL_DEREF = "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write"


@pytest.fixture
def placed(request):
    """After the test (its verdict is in): the report titled ``title`` is pinned on ``source``,
    a line of crashy.c."""
    wanted: dict[str, str] = {}
    yield wanted
    verdict = test_run_of(request.node).verdict
    assert verdict is not None
    report = next(r for r in verdict.reports if r.title == wanted["title"])
    assert report.module_frame is not None and report.module_frame.module == "crashy"
    assert report.location and re.search(r"(^|/)crashy\.c:\d+$", report.location), report
    assert report.source_line and report.source_line.strip() == wanted["source"], report


def test_the_guest_runs_the_newer_kernel(guest):
    assert guest.check_output("uname -r").startswith("6.12.")


@pytest.mark.expect_oops(f"^{re.escape(NULL_DEREF)}$")
def test_null_dereference_in_exit(kmod, placed):
    placed.update(title=NULL_DEREF, source="*p = 42;")
    crashy = kmod(CRASHY)
    crashy.load(mode="null_exit")
    with pytest.raises(KernelCrashed):
        crashy.unload()


@pytest.mark.expect_oops("^kernel BUG in crashy_init$")
def test_bug_on(kmod, placed):
    placed.update(title="kernel BUG in crashy_init", source="BUG_ON(divisor == 0);")
    with pytest.raises(KernelCrashed):
        kmod(CRASHY).load(mode="bug")
