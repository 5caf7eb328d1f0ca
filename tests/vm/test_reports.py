"""Failure reports as a user sees them: a whole pytest session run in a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def blog_session(harness_session, tmp_path_factory):
    junit = tmp_path_factory.mktemp("junit") / "scenario.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/scenarios/scenario_blog.py", "--vm-reuse",
         "--vm-keep", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name")] = ("failed" if failed else "passed", case)
    return proc, outcomes


def test_blog_scenario_fails_with_title_source_line_and_report(blog_session):
    proc, outcomes = blog_session
    assert proc.returncode == 1, proc.stdout[-3000:]
    out = proc.stdout
    assert "BUG: unable to handle kernel NULL pointer dereference in hello_exit" in out
    assert re.search(r"at modules/hello-oops/hello\.c:2\d: \*p = 0;", out), out[-4000:]
    assert "RIP: 0010:hello_exit+" in out  # the trimmed report is in the message
    assert outcomes["test_blog_null_write_in_exit"][0] == "failed"


def test_the_test_after_the_oops_passes(blog_session):
    _, outcomes = blog_session
    assert outcomes["test_after_the_oops"][0] == "passed"


def test_panic_is_reported_from_the_serial_console(blog_session):
    proc, outcomes = blog_session
    assert outcomes["test_panic_in_init"][0] == "failed"
    failure = outcomes["test_panic_in_init"][1].find("failure")
    assert "kernel panic: crashy: deliberate panic" in failure.get("message", "") + failure.text
    assert "the guest stopped answering" in failure.text
    assert "crashy_init" in failure.text  # the module frame of the panic's call trace


def test_the_test_after_the_panic_passes(blog_session):
    _, outcomes = blog_session
    assert outcomes["test_after_the_panic"][0] == "passed"


def test_kernel_lines_land_in_junit_system_out(blog_session):
    _, outcomes = blog_session
    system_out = outcomes["test_after_the_oops"][1].find("system-out")
    assert system_out is not None and "Hello World" in system_out.text
