"""The bugs module authors make, planted one per module (tests/vm/modules/planted), on each box:
which are caught, under which title, pinned on which line of the module.

The stock Debian kernel misses most memory-safety bugs; the debug box (KASAN, kmemleak,
lockdep, DEBUG_ATOMIC_SLEEP) must catch each one, title it as syzkaller does and point at the
planted line. A leak is caught on both: by kmemleak on the debug box, by the kmem ledger on the
stock one. The clean control must stay clean everywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.plugin import test_run_of

pytestmark = pytest.mark.vm

PLANTED = Path(__file__).parent / "modules" / "planted"
STOCK, DEBUG = "debian-12", "debian-12-debug"

# module -> the planted line, and per box the title of the finding (None: not caught there).
EXPECTED: dict[str, tuple[str, dict[str, str | None]]] = {
    "uaf_read": ("seen = READ_ONCE(item->value);", {
        STOCK: None, DEBUG: "KASAN: use-after-free Read in uaf_read_init"}),
    "uaf_write": ("WRITE_ONCE(item->value, 42);", {
        STOCK: None, DEBUG: "KASAN: use-after-free Write in uaf_write_init"}),
    "double_free": ("kfree(again);", {
        STOCK: "kernel BUG in double_free_init", DEBUG: "KASAN: invalid-free in double_free_init"}),
    "slab_oob": ("buffer[index] = 'x';", {
        STOCK: None, DEBUG: "KASAN: slab-out-of-bounds Write in slab_oob_init"}),
    "stack_oob": ("return values[index];", {
        STOCK: None, DEBUG: "KASAN: stack-out-of-bounds Read in stack_oob_sum"}),
    "leak": ("void *object = kmalloc(128, GFP_KERNEL);", {
        STOCK: "memory leak in leak_init", DEBUG: "memory leak in leak_init"}),
    "abba": ("mutex_lock(&lock_a);", {
        STOCK: None, DEBUG: "possible deadlock in abba_init"}),
    "sleep_atomic": ("object = kmalloc(64, GFP_KERNEL);", {
        STOCK: None,
        DEBUG: "BUG: sleeping function called from invalid context in sleep_atomic_init"}),
    "clean_control": ("", {STOCK: None, DEBUG: None}),
}


def _cases():
    for box in (STOCK, DEBUG):
        for bug, (_, titles) in EXPECTED.items():
            marks = [pytest.mark.vm_box(box)]
            if titles[box]:  # caught: under this title, pinned on the planted line
                marks.append(pytest.mark.expect_oops("^" + re.escape(titles[box]) + "$",
                                                     source=EXPECTED[bug][0]))
            kind = "debug" if box == DEBUG else "stock"
            yield pytest.param(bug, box, marks=marks, id=f"{bug}-{kind}")


@pytest.fixture
def finding(request):
    """Records each case's findings (one JSON row in .harness/planted-bugs.jsonl) for the table
    in the README. It judges nothing: the verdict does, in the test's own report (the expected
    title on the planted line via expect_oops; a box that cannot see the bug must report
    nothing, which any report fails)."""
    holder: dict[str, str] = {}
    yield holder
    verdict = test_run_of(request.node).verdict
    if verdict is None or "bug" not in holder:
        return
    wanted = EXPECTED[holder["bug"]][1][holder["box"]]
    report = next((r for r in verdict.reports if r.title == wanted), None)
    row = {"bug": holder["bug"], "box": holder["box"],
           "titles": [r.title for r in verdict.reports],
           "location": report.location if report else None,
           "source": report.source_line.strip() if report and report.source_line else None,
           "history": report.history if report else []}
    out = Path(request.config.rootpath) / ".harness" / "planted-bugs.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as rows:
        rows.write(json.dumps(row) + "\n")


@pytest.mark.parametrize(("bug", "box"), list(_cases()))
def test_planted_bug(kmod, finding, bug, box):
    finding.update(bug=bug, box=box)
    module = kmod(PLANTED, name=bug)
    module.load()
    module.unload()
