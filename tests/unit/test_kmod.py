import pytest

from harness.kmod import ModuleError, format_param


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("count", 5, "count=5"),
    ("flag", True, "flag=Y"),
    ("flag", False, "flag=N"),
    ("name", "two words", 'name="two words"'),
    ("values", [1, 2, 3], "values=1,2,3"),
])
def test_parameters_are_formatted_for_insmod(name, value, expected):
    assert format_param(name, value) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("bad-name", 1), ("x; rm -rf /", 1), ("ok", 'quote"inside'), ("ok", "new\nline"),
    ("ok", "tab\there"),
])
def test_bad_names_and_values_are_refused(name, value):
    with pytest.raises(ModuleError, match="invalid"):
        format_param(name, value)
