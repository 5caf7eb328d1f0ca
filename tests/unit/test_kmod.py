import subprocess

import pytest

from harness.kmem import parse_span
from harness.kmod import (
    ModuleError,
    dependency_order,
    format_param,
    ko_modinfo,
    load_script,
    module_name,
    split_load_output,
)
from harness.transport import CommandResult


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


# -- one command for the leak check's start, insmod and the module's span ------------------------
def _run_load_script(insmod: str, start: str = "", span_of: str | None = None):
    script = load_script(insmod, start, span_of)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    result = CommandResult(script, done.returncode, done.stdout, done.stderr)
    return split_load_output(result, insmod)


def test_a_failed_leak_check_start_is_reported_and_the_load_goes_on():
    result, start_error, span = _run_load_script(
        "echo insmod said this; exit 3", start="true &&\nfalse &&\necho never")
    assert (result.exit_status, result.stdout, result.command) == (
        3, "insmod said this\n", "echo insmod said this; exit 3")
    assert start_error == "it failed without a message"
    _, start_error, _ = _run_load_script("true", start="echo cannot write >&2 && false")
    assert start_error == "cannot write"


def test_the_span_follows_a_load_that_worked_and_only_then():
    result, start_error, span = _run_load_script("true", start="true", span_of="nosuchmodule")
    assert (result.exit_status, result.stdout, start_error) == (0, "", None)
    assert span == ""  # no such module: nothing to read
    result, _, span = _run_load_script("exit 137", span_of="nosuchmodule")
    assert (result.exit_status, span) == (137, "")  # a crash in init: no span, insmod's status


def test_a_span_is_read_from_proc_modules_and_the_sections():
    text = ("hello 16384 0 - Live 0xffffffffc0820000 (OE)\n"
            "/sys/module/hello/sections/.text:0xffffffffc0820000\n"
            "/sys/module/hello/sections/.init.text:0xffffffffc0825000\n")
    span = parse_span("hello", text)
    assert (span.start, span.size) == (0xFFFFFFFFC0820000, 16384)
    assert span.sections == {".text": 0xFFFFFFFFC0820000, ".init.text": 0xFFFFFFFFC0825000}
    assert span.holds("0xffffffffc0825010") and not span.holds("0xffffffffc0000010")
    assert parse_span("hello", "") is None


def test_a_module_name_from_a_hostile_file_name_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    result, _, span = _run_load_script("true", span_of=f"x$(touch {marker})';touch {marker};'")
    assert result.exit_status == 0 and span == "" and not marker.exists()


def test_a_ko_whose_headers_point_outside_it_has_no_modinfo(tmp_path):
    """A student writes every byte of their .ko: cut short, or with section headers pointing
    past its end, it is read as having no .modinfo, not as an error of the harness."""
    (tmp_path / "m.c").write_text(MODINFO_C)
    subprocess.run(["gcc", "-c", "-o", tmp_path / "m.o", tmp_path / "m.c"], check=True)
    whole = (tmp_path / "m.o").read_bytes()
    pointing_out = bytearray(whole)
    pointing_out[0x28:0x30] = (len(whole) + 4096).to_bytes(8, "little")  # e_shoff
    for data in (whole[:0x30], whole[:len(whole) // 2], bytes(pointing_out), b"\x7fELF"):
        assert ko_modinfo(data) == {}
