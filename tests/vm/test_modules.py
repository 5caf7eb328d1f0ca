"""The blog's loop in a real guest: build, insmod, dmesg, rmmod, through the plugin's fixtures."""

from __future__ import annotations

import re

import pytest

from harness.build import BuildError
from harness.kmod import LoadError
from harness.kmsg import ExpectTimeout

pytestmark = pytest.mark.vm


def test_hello_greets_and_says_goodbye(kmod, dmesg):
    hello = kmod("modules/hello")
    hello.load()
    assert hello.is_loaded()
    dmesg.expect("Hello World", timeout=10)
    hello.unload()
    assert not hello.is_loaded()
    assert "Goodbye, cruel world, I'm leaving you today" in dmesg
    assert dmesg.lost == 0


def test_llist_builds_prints_and_frees_n_items(kmod, dmesg):
    llist = kmod("modules/llist")
    with llist:
        assert llist.parameters()["count"] == "5"
    assert "llist: created 5 items" in dmesg
    assert "llist: freed 5 items" in dmesg
    assert len(dmesg.grep(r"llist: birthday \d+/\d+/\d+", regex=True)) == 5


def test_llist_count_parameter(kmod, dmesg):
    llist = kmod("modules/llist")
    llist.load(count=12)
    assert llist.parameters()["count"] == "12"
    llist.unload()
    assert "llist: freed 12 items" in dmesg


def test_llist_rejects_a_negative_count_with_the_kernels_reason(kmod, dmesg):
    llist = kmod("modules/llist")
    with pytest.raises(LoadError) as failure:
        llist.load(count=-1)
    assert "Invalid argument" in str(failure.value) or "Invalid parameters" in str(failure.value)
    assert "count must be between 0 and 10000" in str(failure.value)
    assert not llist.is_loaded()


def test_parameters_of_several_types(kmod, dmesg):
    params = kmod("modules/params")
    params.load(number=41, flag=True, name="harness", values=[1, 2, 3])
    line = dmesg.expect(re.compile(r"params: number=\d+"))
    assert line == "params: number=41 flag=1 name=harness values=3 sum=6"
    assert params.parameters() == {"number": "41", "flag": "Y", "name": "harness",
                                   "values": "1,2,3"}
    info = params.modinfo()
    assert info["name"] == ["params"]
    assert any(p.startswith("number:") for p in info["parm"])
    params.unload()
    assert "params: bye harness" in dmesg


def test_unknown_symbol_or_bad_parameter_is_explained(kmod):
    params = kmod("modules/params")
    with pytest.raises(LoadError) as failure:
        params.load(number="not-a-number")
    assert "number" in str(failure.value)


def test_a_line_that_never_comes_fails_with_the_lines_that_did(kmod, dmesg):
    hello = kmod("modules/hello")
    hello.load()
    with pytest.raises(ExpectTimeout) as failure:
        dmesg.expect("a line the module never prints", timeout=2)
    message = str(failure.value)
    assert "a line the module never prints" in message
    assert "Hello World" in message  # the lines that did come are listed


def test_a_syntax_error_fails_with_file_line_error(kmod, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Makefile").write_text("obj-m += broken.o\n")
    (broken / "broken.c").write_text(
        '#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'
        "static int __init broken_init(void)\n{\n\treturn 0\n}\nmodule_init(broken_init);\n"
    )
    module = kmod(broken)
    with pytest.raises(BuildError) as failure:
        module.build()
    first_line = str(failure.value).splitlines()[1]
    assert first_line.startswith(f"{broken}/broken.c:5:") or "broken.c:5:" in first_line
    assert "error:" in first_line
    assert module.build_result is not None and module.build_result.errors


def test_warnings_are_available_to_tests(kmod, tmp_path):
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    (noisy / "Makefile").write_text("obj-m += noisy.o\n")
    (noisy / "noisy.c").write_text(
        '#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'
        "static int __init noisy_init(void)\n{\n\tint unused;\n\treturn 0;\n}\n"
        "static void __exit noisy_exit(void) {}\n"
        "module_init(noisy_init);\nmodule_exit(noisy_exit);\n"
    )
    build = kmod(noisy).build()
    assert build.ok
    assert any("unused" in w.message and w.line == 5 for w in build.warnings)


def test_second_cycle_of_an_unchanged_module_sends_no_files(kmod):
    hello = kmod("modules/hello")
    hello.build()
    again = kmod("modules/hello")
    again.build()
    assert again.last_sync is not None
    assert again.last_sync.sent == [] and again.last_sync.removed == []
