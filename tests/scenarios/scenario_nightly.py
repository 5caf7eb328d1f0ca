"""Run by tests/vm/test_nightly.py several times, as the nights of a nightly: one module crashes
only sometimes, another crash is a known one.

Whether crashy crashes in ``test_sometimes_crashes`` is a parameter-driven fault decided by a
schedule the outer test writes (``$HARNESS_SCENARIO_SCHEDULE``: words, one taken per attempt;
``crash`` loads crashy with ``mode=null_exit``, ``ok`` with ``mode=none``), so every night does
the same on any machine.
"""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm


def _next_fault() -> str:
    schedule = Path(os.environ["HARNESS_SCENARIO_SCHEDULE"])
    words = schedule.read_text().split()
    schedule.write_text(" ".join(words[1:]))
    return words[0] if words else "ok"


def test_steady(kmod, dmesg):
    hello = kmod("modules/hello")
    hello.load()
    hello.unload()
    assert "Hello World" in dmesg


def test_sometimes_crashes(kmod):
    crashy = kmod("modules/crashy")
    crashy.load(mode="null_exit" if _next_fault() == "crash" else "none")
    crashy.unload()


def test_known_warning(kmod):
    kmod("modules/crashy").load(mode="warn")  # every night: in the known-failures file
