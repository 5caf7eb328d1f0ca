"""The pytest plugin's hooks, tested as pytest tests its own: small pytest sessions run by
``pytester``, no VM."""

from __future__ import annotations

import pytest


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
