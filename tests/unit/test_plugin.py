"""The pytest plugin's hooks, tested as pytest tests its own: small pytest sessions run by
``pytester``, no VM."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness.plugin


@pytest.mark.parametrize("form", ["separate", "joined"])
@pytest.mark.parametrize("suite_ini", [False, True])
def test_test_ids_stay_relative_to_the_suite_whatever_the_option_form(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, form: str,
        suite_ini: bool):
    if suite_ini:
        pytester.makeini("[pytest]\naddopts = -rA\n")
    pytester.makepyfile(test_x="def test_hello():\n    pass\n")
    # The harness checkout shared for its VM has an ini file of its own, as this one does.
    project = tmp_path_factory.mktemp("checkout")
    (project / "tox.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    option = (["--vm-project", str(project)] if form == "separate"
              else [f"--vm-project={project}"])
    # A subprocess: in-process, the plugin is known before pytest picks its rootdir.
    result = pytester.runpytest_subprocess(*option, "-v", "test_x.py", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "test_x.py::test_hello PASSED*"])
    assert 'classname="test_x"' in (pytester.path / "junit.xml").read_text()
    if suite_ini:  # the suite's own addopts (-rA) applied, the checkout's not
        result.stdout.fnmatch_lines(["PASSED test_x.py::test_hello"])


SCRIPTED_CONFTEST = """
import pytest
from fakeguest import scripted_session


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory):
    session, _, _ = scripted_session(tmp_path_factory.mktemp("vm"))
    return session
"""

SCRIPTED_TESTS = """
import pytest
from fakeguest import console

pytestmark = pytest.mark.vm


def test_quiet(guest, dmesg):
    guest.transport.log("[    1.0] Hello World")
    assert "Hello World" in dmesg


def test_crashes(guest):
    guest.transport.log(*console("null_exit"))


@pytest.mark.expect_oops("BUG: unable to handle kernel NULL pointer dereference")
def test_must_crash(guest):
    guest.transport.log(*console("null_exit"))


@pytest.mark.expect_oops("kernel BUG")
def test_must_crash_but_does_not(guest):
    pass


@pytest.mark.expect_oops("BUG: unable to handle kernel NULL pointer dereference")
def test_must_crash_and_the_crash_fails_a_command(guest):
    from harness.errors import CommandFailed
    from harness.transport import CommandResult

    guest.transport.log(*console("null_exit"))
    raise CommandFailed(CommandResult("rmmod crashy", 137, "", "Killed"))  # what rmmod says


@pytest.mark.expect_oops("BUG: unable to handle kernel NULL pointer dereference")
def test_must_crash_and_asserts_something_else(guest):
    guest.transport.log(*console("null_exit"))
    assert 1 + 1 == 3, "an assertion the crash did not cause"
"""


def test_the_plugin_judges_each_test_by_its_kernel(pytester: pytest.Pytester, monkeypatch):
    from harness import testrun

    monkeypatch.setattr(testrun, "PANIC_SETTLE_S", 0)
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.makeini("[pytest]\njunit_logging = system-out\n")  # as the README says
    pytester.makeconftest(SCRIPTED_CONFTEST)
    pytester.makepyfile(test_scripted=SCRIPTED_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "--junitxml=junit.xml")
    result.assert_outcomes(passed=3, failed=3)
    outcomes = {r.nodeid.split("::")[1]: r.outcome
                for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
                if r.when == "call"}
    assert outcomes == {"test_quiet": "passed", "test_crashes": "failed",
                        "test_must_crash": "passed", "test_must_crash_but_does_not": "failed",
                        # What the crash caused is forgiven; an unrelated assertion is not.
                        "test_must_crash_and_the_crash_fails_a_command": "passed",
                        "test_must_crash_and_asserts_something_else": "failed"}
    assert ("the expected kernel crash happened (BUG: unable to handle kernel NULL pointer "
            "dereference in crashy_null_write), but the test failed for another reason"
            in result.stdout.str())
    crashed = next(r for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
                   if r.nodeid.endswith("test_crashes") and r.when == "call")
    text = str(crashed.longrepr)
    assert text.startswith("the kernel went wrong during this test")
    assert "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write" in text
    assert any(name == "Captured stdout kernel log" for name, _ in crashed.sections)
    assert ("expected a kernel crash matching ['kernel BUG'], got: no crash report at all"
            in result.stdout.str())
    assert "crashy: mode=null_exit" in (pytester.path / "junit.xml").read_text()


LEDGER_TESTS = """
import pytest
from harness.errors import GuestUnreachable

pytestmark = pytest.mark.vm


def test_healthy(kmem, guest):
    guest.transport.log("[    1.0] llist: created 4 items")


def test_guest_dies(kmem, guest):
    guest.transport.dead = True
    guest.transport.run("insmod hang.ko")


def test_what_was_sent(harness_session):
    sent = harness_session.guest.transport.commands
    died = sent.index("insmod hang.ko")
    stops = [n for n, text in enumerate(sent) if text.endswith("/tracing_on") and "echo 0" in text
             and "trace &&" not in text]
    assert stops and all(n < died for n in stops), sent
    assert harness_session.vm.steps == ["revert"]
"""


def test_the_kmem_ledger_is_not_stopped_in_a_guest_about_to_be_restored(
        pytester: pytest.Pytester, monkeypatch):
    """A hung or dead guest is not asked anything more (each question costs the SSH connect
    timeout); the healthy test's ledger is stopped as before."""
    from harness import testrun

    monkeypatch.setattr(testrun, "PANIC_SETTLE_S", 0)
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.makeconftest(SCRIPTED_CONFTEST + """

@pytest.fixture(autouse=True)
def _revived(harness_session):
    yield
    harness_session.guest.transport.dead = False  # the revert brought it back
""")
    pytester.makepyfile(test_ledger=LEDGER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_ledger.py::test_guest_dies*"])


BOX_CONFTEST = """
import pytest
from fakeguest import scripted_session

import harness.plugin
from box_opened import OPENED


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory):
    session, _, _ = scripted_session(tmp_path_factory.mktemp("vm"))
    return session


def _open_session(config, options, project, box=None):
    OPENED.append((options.box, box))
    session, _, vm = scripted_session(project / f"box-{box}")
    vm.settings.box.name = options.box
    return session


def pytest_configure(config):
    # This session runs in the outer pytest's process (runpytest): the module global is put
    # back when it ends, or the outer run's own VM tests would get scripted VMs.
    real = harness.plugin._open_session
    harness.plugin._open_session = _open_session
    config.add_cleanup(lambda: setattr(harness.plugin, "_open_session", real))
"""

BOX_TESTS = """
import pytest
from box_opened import OPENED

from harness.plugin import test_run_of

pytestmark = pytest.mark.vm


def _box(request):
    return test_run_of(request.node).box


def test_default_box(request):
    assert _box(request) == "debian-12"


@pytest.mark.vm_box("debian-12-debug")
def test_debug_box(request):
    assert _box(request) == "debian-12-debug"


@pytest.mark.vm_box("debian-12-debug")
def test_debug_box_again(request):
    assert _box(request) == "debian-12-debug"
    assert OPENED == [("debian-12-debug", "debian-12-debug")]  # one VM per box


@pytest.mark.vm_box("harness/debian-12")
def test_the_run_s_own_box_by_its_vagrant_name(request):
    assert _box(request) == "debian-12"
"""


def test_vm_box_runs_a_test_on_another_box_s_vm_started_once(pytester: pytest.Pytester):
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.syspathinsert()  # box_opened: the VMs the conftest opened, seen by the tests
    pytester.makepyfile(box_opened="OPENED = []\n")
    pytester.makeconftest(BOX_CONFTEST)
    pytester.makepyfile(test_vm_box_choice=BOX_TESTS)
    real_open_session = harness.plugin._open_session
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=4)
    assert harness.plugin._open_session is real_open_session  # nothing leaks into this run


SESSION_CONFTEST = """
import pytest
from fakeguest import ScriptedTransport, ScriptedVM
from harness import cleanstate
from harness import session as harness_session_module
from harness.errors import VMError
from harness.guest import Guest


class Steps(list):
    # A VM's steps, also written to steps.txt (pytester forgets this module after the run).

    def append(self, step):
        super().append(step)
        with open("steps.txt", "a") as out:
            out.write(f"{id(self)} {step}\\n")


def make_vm(options, vm_dir, log=None, catalogue_dir=None):
    if options.box == "debian-12-debug" and vm_dir.parent.name == "boxes" and FAIL_DEBUG:
        raise VMError("the debug box's VM did not come up")
    vm = ScriptedVM(vm_dir, steps=Steps())
    vm.settings.box.name = options.box or "debian-12"
    vm.has_snapshot = lambda: True
    vm.steps.append("made")
    return vm


FAIL_DEBUG = False


@pytest.fixture(autouse=True, scope="session")
def _scripted_vms(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setattr(harness_session_module, "make_vm", make_vm)
    mp.setattr(cleanstate, "ready_vm", lambda vm, reuse=True: vm)
    mp.setattr(harness_session_module, "make_guest", lambda vm, build_mode="auto":
               Guest(ScriptedTransport(), tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
"""

SESSION_TESTS = """
import pytest
import conftest

pytestmark = pytest.mark.vm


def test_on_the_default_box(harness_session, guest):
    assert harness_session.vm.settings.box.name == "debian-12"
    guest.transport.log("[    1.0] hello")


@pytest.mark.vm_box("debian-12-debug")
def test_on_the_debug_box(harness_session, guest):
    assert guest.transport is not harness_session.guest.transport  # a VM of its own
"""


@pytest.mark.parametrize(("end", "fail_debug", "skip"), [
    ("save", False, False), ("destroy", False, False), ("save", True, True),
    ("save", True, False)])
def test_the_session_fixture_opens_one_vm_per_box_and_ends_them_as_asked(
        pytester: pytest.Pytester, end, fail_debug, skip):
    pytester.syspathinsert(Path(__file__).parent)  # fakeguest
    pytester.makeconftest(SESSION_CONFTEST.replace("FAIL_DEBUG = False",
                                                   f"FAIL_DEBUG = {fail_debug}"))
    pytester.makepyfile(test_session=SESSION_TESTS)
    args = ["-p", "no:cacheprovider", "-rA", f"--vm-end={end}"]
    result = pytester.runpytest(*args, *(["--vm-skip-unavailable"] if skip else []))
    outcome = {"passed": 1}
    if not fail_debug:
        outcome["passed"] = 2
    elif skip:
        outcome["skipped"] = 1
    else:
        outcome["errors"] = 1
    result.assert_outcomes(**outcome)
    if fail_debug:
        result.stdout.fnmatch_lines(["*no VM could be had: the debug box's VM did not come up*"])
    result.stdout.fnmatch_lines([f"harness: VM at the end: {end} *"])
    steps: dict[str, list[str]] = {}
    for line in (pytester.path / "steps.txt").read_text().splitlines():
        vm, step = line.split(" ", 1)
        steps.setdefault(vm, []).append(step)
    steps = list(steps.values())
    final = {"save": "power off", "destroy": "destroy"}[end]
    assert all(s[-2:] == ["close", final] for s in steps), steps
    assert len(steps) == (1 if fail_debug else 2)
