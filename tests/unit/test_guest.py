"""The guest API tests call (commands, files, programs), on a local transport standing in for
the guest: the same code paths as over SSH, without a VM."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import CommandFailed, ConfigurationError
from harness.guest import Guest, HostPaths, ProgramBuildError
from harness.transport import LocalTransport


@pytest.fixture
def guest(tmp_path: Path) -> Guest:
    # root "/" makes guest paths and host paths the same, as commands see them.
    return Guest(LocalTransport(Path("/")), tmp_path / "cache",
                 remote_base=str(tmp_path / "guest"))


def test_run_returns_whatever_the_exit_status(guest):
    result = guest.run("echo out; echo err >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok


def test_check_output_raises_with_command_status_and_stderr(guest, tmp_path):
    missing = tmp_path / "no-such-file"
    with pytest.raises(CommandFailed) as failure:
        guest.check_output(["cat", str(missing)])
    message = str(failure.value)
    assert f"`cat {missing}` as vagrant exited 1 (expected 0)" in message
    assert "No such file or directory" in message
    assert failure.value.result.exit_status == 1
    assert guest.check_output("printf 'a\\nb\\n'") == "a\nb"


def test_run_expect_accepts_the_listed_statuses(guest):
    assert guest.run_expect([0, 1], "exit 1").exit_status == 1
    with pytest.raises(CommandFailed, match=r"exited 2 \(expected 0 or 1\)"):
        guest.run_expect([0, 1], "exit 2")


def test_argv_words_are_never_parsed_by_a_shell(guest):
    assert guest.check_output(["echo", "$HOME; rm -rf /"]) == "$HOME; rm -rf /"


def test_files_go_in_and_come_back(guest, tmp_path):
    local = tmp_path / "data.txt"
    local.write_text("hello\n")
    remote = guest.put(local)
    assert remote == str(tmp_path / "guest" / "files" / "data.txt")
    assert guest.read_text(remote) == "hello\n"
    guest.write_text(str(tmp_path / "guest" / "deep" / "new.txt"), "written")
    back = guest.get(str(tmp_path / "guest" / "deep" / "new.txt"), tmp_path / "back" / "new.txt")
    assert back.read_text() == "written" and guest.exists(str(back))
    with pytest.raises(ConfigurationError, match="does not exist"):
        guest.put(tmp_path / "missing")


def test_a_folder_is_copied_whole(guest, tmp_path):
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f").write_text("x")
    remote = guest.put(folder)
    assert guest.read_text(remote + "/sub/f") == "x"


def test_a_program_is_compiled_in_the_guest_and_run(guest, tmp_path):
    source = tmp_path / "client.c"
    source.write_text('#include <stdio.h>\nint main(int c, char **v)'
                      '{ printf("%d %s\\n", c, v[1]); return 0; }\n')
    program = guest.program(source)
    assert program.check_output("one word; not a shell") == "2 one word; not a shell"
    assert guest.program(source) is program  # same sources: not compiled again


def test_a_program_that_does_not_compile_names_file_and_line(guest, tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("int main(void) {\n  return undefined_thing;\n}\n")
    with pytest.raises(ProgramBuildError) as failure:
        guest.program(source)
    assert f"{source}:2: error:" in str(failure.value)
    assert "undefined_thing" in str(failure.value)


def test_relative_host_paths_start_at_the_test_file(tmp_path):
    (tmp_path / "tests" / "mod").mkdir(parents=True)
    (tmp_path / "modules" / "old").mkdir(parents=True)
    paths = HostPaths(tmp_path / "tests", fallback=tmp_path)
    assert paths.resolve("mod") == tmp_path / "tests" / "mod"
    assert paths.resolve("modules/old") == tmp_path / "modules" / "old"  # the rootdir way
    with pytest.raises(ConfigurationError, match="relative to the test file"):
        paths.resolve("nowhere")
