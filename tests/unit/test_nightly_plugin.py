"""Known failures and re-runs (harness.nightly): the file's entries, and small pytest sessions
run by ``pytester`` on the scripted guest, no VM."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.nightly.known import KnownFailuresError, load_known_failures

pytest_plugins = ["pytester"]


def test_an_entry_explains_a_failure_by_test_box_and_text(tmp_path: Path):
    path = tmp_path / "known.yaml"
    path.write_text('- test: "tests/vm/test_x.py::test_race*"\n'
                    '  box: "debian-12-*"\n'
                    '  match: "KASAN: .* in race_worker"\n'
                    "  reason: https://bugs.example/1\n"
                    "- test: tests/vm/test_y.py::test_z\n"
                    "  reason: any failure of it (no match)\n")
    known = load_known_failures(path)
    kasan = ["KASAN: slab-use-after-free Read in race_worker"]
    entry = known.explaining("tests/vm/test_x.py::test_race[3]", "debian-12-debug", kasan)
    assert entry is not None and entry.where == f"{path}:1"
    assert entry.describe() == f"known failure ({path}:1): https://bugs.example/1"
    assert known.explaining("tests/vm/test_x.py::test_race", "debian-11", kasan) is None
    assert known.explaining("tests/vm/test_x.py::test_race", None, kasan) is None
    assert known.explaining("tests/vm/test_x.py::test_race", "debian-12",
                            ["WARNING in race_worker"]) is None
    assert known.explaining("tests/vm/test_y.py::test_z", None, ["anything"]).where.endswith(":5")
    assert known.covering("tests/vm/test_y.py::test_z", "debian-12") is not None
    assert known.covering("tests/vm/test_y.py::test_other", "debian-12") is None


@pytest.mark.parametrize(("text", "line", "says"), [
    ("- test: a\n  reason: b\n- test: c\n", 3, "missing key(s) reason"),
    ("- test: a\n  reason: b\n\n- test: c\n  reason: d\n  matches: x\n", 4,
     "unknown key 'matches'"),
    ("- test: a\n  reason: b\n  match: '(unclosed'\n", 1, "not a regular expression"),
    ("- test: a\n  reason: [1, 2]\n", 1, "key 'reason' must be str"),
    ("test: a\nreason: b\n", 1, "expected a list of entries"),
    ("- test: ''\n  reason: b\n", 1, "test is empty"),
])
def test_a_malformed_entry_is_an_error_naming_its_line(tmp_path: Path, text: str, line: int,
                                                        says: str):
    path = tmp_path / "known.yaml"
    path.write_text(text)
    with pytest.raises(KnownFailuresError) as caught:
        load_known_failures(path)
    assert str(caught.value).startswith(f"{path}:{line}:")
    assert says in str(caught.value)


def test_a_known_failures_file_that_is_not_yaml_says_so(tmp_path: Path):
    path = tmp_path / "known.yaml"
    path.write_text("- test: [unclosed\n")
    with pytest.raises(KnownFailuresError, match="not valid YAML"):
        load_known_failures(path)
    with pytest.raises(KnownFailuresError, match="cannot read"):
        load_known_failures(tmp_path / "missing.yaml")


CONFTEST = """
import pytest
from fakeguest import scripted_session

OPENED = []


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory):
    session, transport, vm = scripted_session(tmp_path_factory.mktemp("vm"))
    OPENED.append(vm)
    return session
"""

TESTS = """
import pytest
from conftest import OPENED
from fakeguest import console

pytestmark = pytest.mark.vm
ATTEMPTS = {}


def attempt(name):
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    return ATTEMPTS[name]


def test_crashes(guest):
    guest.transport.log(*console("null_exit"))


def test_counts_wrong(guest):
    assert 2 + 2 == 5, "the list has 5 items"


def test_was_broken(guest):
    pass


def test_fails_for_a_new_reason(guest):
    assert False, "a brand new bug"


def test_fails_once(guest):
    assert attempt("once") > 1, "a race lost"


def test_crashes_once(guest):
    if attempt("crash") == 1:
        guest.transport.log(*console("null_exit"))


def test_always_fails(guest):
    attempt("always")
    assert False, "broken for good"


def test_one_vm_for_all(guest):
    assert len(OPENED) == 1
"""

KNOWN = """\
- test: "test_nightly_suite.py::test_crashes"
  match: "NULL pointer dereference"
  reason: https://bugs.example/null
- test: "test_nightly_suite.py::test_counts_*"
  box: "debian-*"
  match: "list has \\\\d+ items"
  reason: off by one, being fixed
- test: "test_nightly_suite.py::test_was_broken"
  reason: fixed upstream?
- test: "test_nightly_suite.py::test_fails_for_a_new_reason"
  match: "an old bug"
  reason: only the old bug is known
"""


def _suite(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.syspathinsert()  # conftest's OPENED, seen by the tests
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_nightly_suite=TESTS)
    pytester.path.joinpath("known.yaml").write_text(KNOWN)


def _cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}


def _properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def test_known_failures_pass_the_run_and_fixed_ones_are_named(pytester: pytest.Pytester):
    _suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-known-failures=known.yaml",
                                "--junitxml=junit.xml", "-k", "not once and not always")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("xfailed"), outcomes.get("failed"), outcomes.get("passed")) == (2, 1, 2)
    result.stdout.fnmatch_lines([
        "*harness: known failures (not failing the run)*",
        "test_nightly_suite.py::test_crashes: known failure (*known.yaml:1): "
        "https://bugs.example/null",
        "test_nightly_suite.py::test_counts_wrong: known failure (*known.yaml:4): off by one*",
        "*harness: fixed: known failures that passed*",
        "test_nightly_suite.py::test_was_broken: known failure (*known.yaml:8) passed",
    ])
    cases = _cases(pytester.path / "junit.xml")
    skipped = cases["test_crashes"].find("skipped")
    assert skipped is not None and skipped.get("type") == "pytest.xfail"
    assert "known.yaml:1" in skipped.get("message", "")
    assert _properties(cases["test_crashes"])["crash_title"].startswith(
        "BUG: unable to handle kernel NULL pointer dereference")
    assert _properties(cases["test_crashes"])["box"] == "debian-12"
    assert _properties(cases["test_was_broken"])["harness_known_fixed"].endswith("known.yaml:8")
    # An entry's test failing for another reason than its match is news.
    assert cases["test_fails_for_a_new_reason"].find("failure") is not None


def test_without_the_file_the_same_failures_fail(pytester: pytest.Pytester):
    _suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "not once and not always")
    assert result.parseoutcomes().get("failed") == 3
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_malformed_known_failures_file_stops_the_run_naming_its_line(
        pytester: pytest.Pytester):
    _suite(pytester)
    pytester.path.joinpath("known.yaml").write_text("- test: a\n  reason: b\n- test: c\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-known-failures=known.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*known.yaml:3: missing key(s) reason*"])


def test_a_failed_test_runs_again_on_a_clean_kernel_and_is_flaky_when_it_then_passes(
        pytester: pytest.Pytester):
    _suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-reruns=2", "-v",
                                "--junitxml=junit.xml", "-k", "once or always or one_vm")
    outcomes = result.parseoutcomes()
    outcomes.pop("warnings", None)  # CI's environment may add a warning of its own
    # always: 2 re-runs, then failed; once and crashes_once: 1 re-run each, then flaky: they
    # count apart from the plain passes, never silently green.
    assert outcomes == {"failed": 1, "rerun": 4, "passed": 1, "flaky": 2, "deselected": 4}
    result.stdout.fnmatch_lines(["test_nightly_suite.py::test_fails_once RERUN*",
                                 "test_nightly_suite.py::test_fails_once FLAKY*"])
    result.stdout.fnmatch_lines([
        "*harness: flaky: failed, then passed on a re-run*",
        "test_nightly_suite.py::test_fails_once: flaky: failed 1 of 2 attempts, then passed",
        "test_nightly_suite.py::test_crashes_once: flaky: failed 1 of 2 attempts, then passed",
    ])
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # test_always_fails
    cases = _cases(pytester.path / "junit.xml")
    assert "failed 1 of 2" in _properties(cases["test_fails_once"])["harness_flaky"]
    assert cases["test_fails_once"].find("failure") is None
    assert cases["test_always_fails"].find("failure") is not None
    assert "harness_flaky" not in _properties(cases["test_always_fails"])


def test_re_runs_restore_a_clean_kernel_once_per_attempt(pytester: pytest.Pytester):
    _suite(pytester)
    pytester.makepyfile(test_steps="""
import pytest
from conftest import OPENED

pytestmark = pytest.mark.vm


def test_steps():
    assert len(OPENED) == 1
    print("STEPS", OPENED[0].steps.count("revert"))
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-reruns=2", "-s",
                                "test_nightly_suite.py", "test_steps.py",
                                "-k", "once or always or steps")
    # Before test_steps: fails_once (1 re-run), crashes_once (its crash's own restore, then
    # its re-run on that clean kernel), always_fails (2 re-runs).
    result.stdout.fnmatch_lines(["*STEPS 4*"])


def test_re_runs_are_off_for_tests_without_the_vm_marker(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="""
COUNT = []

def test_plain():
    COUNT.append(1)
    assert len(COUNT) > 1
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--vm-reruns=3")
    outcomes = result.parseoutcomes()
    outcomes.pop("warnings", None)  # CI's environment may add a warning of its own
    assert outcomes == {"failed": 1}


def test_known_flaky_and_rerun_verdicts_cross_xdist_workers(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch):
    _suite(pytester)
    monkeypatch.setenv("PYTHONPATH", f"{Path(__file__).parent}:{pytester.path}")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--vm-reruns=1", "--vm-known-failures=known.yaml",
        "--junitxml=junit.xml", "-k", "not always and not one_vm")
    outcomes = result.parseoutcomes()
    outcomes.pop("warnings", None)
    assert outcomes == {"xfailed": 2, "failed": 1, "rerun": 3, "passed": 1, "flaky": 2}, \
        result.stdout.str()
    result.stdout.fnmatch_lines(["*harness: known failures*", "*harness: fixed*",
                                 "*harness: flaky*"])
    cases = _cases(pytester.path / "junit.xml")
    assert "harness_flaky" in _properties(cases["test_fails_once"])


def test_the_nightly_s_own_known_failures_file_loads():
    path = Path(__file__).resolve().parents[2] / ".github" / "known-failures.yaml"
    entries = load_known_failures(path).entries
    # the kernel-matrix job's example: classdev-5.10 does not build from 6.4 on
    assert {e.box for e in entries} == {"debian-12-k6.12", "debian-13", "debian-sid"}
