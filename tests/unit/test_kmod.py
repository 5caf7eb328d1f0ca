import subprocess

import pytest

from harness.kmod import ModuleError, dependency_order, format_param, ko_modinfo, module_name


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


# -- modinfo read on the host, dependency order ----------------------------------------------------
MODINFO_C = r"""
static const char a[] __attribute__((section(".modinfo"), used)) = "license=GPL";
static const char b[] __attribute__((section(".modinfo"), used)) = "depends=exporter,crc32";
static const char c[] __attribute__((section(".modinfo"), used)) = "name=user";
int unrelated = 1;
"""


def test_modinfo_is_read_from_the_ko_file_itself(tmp_path):
    # A real ELF object with a .modinfo section, as kbuild writes one.
    (tmp_path / "m.c").write_text(MODINFO_C)
    subprocess.run(["gcc", "-c", "-o", tmp_path / "m.o", tmp_path / "m.c"], check=True)
    info = ko_modinfo((tmp_path / "m.o").read_bytes())
    assert info["depends"] == ["exporter,crc32"]
    assert info["name"] == ["user"] and info["license"] == ["GPL"]
    assert ko_modinfo(b"not an elf file") == {}


def test_modules_load_after_what_they_depend_on():
    order = dependency_order({"user": ["exporter", "crc32"], "exporter": [], "other": ["user"]})
    assert order.index("exporter") < order.index("user") < order.index("other")
    assert "crc32" not in order  # an in-tree dependency is modprobe's business


def test_a_dependency_cycle_is_a_clear_error():
    with pytest.raises(ModuleError, match="cycle"):
        dependency_order({"a": ["b"], "b": ["a"]})


def test_module_names_follow_the_kernel(tmp_path):
    assert module_name("/tmp/x/hello-world.ko") == "hello_world"
