"""Modules as their authors test them, written only against the README's fixture table: a
char device driven by its user-space ioctl client, procfs and sysfs files, a folder that
builds two modules, files in and out of the guest, commands that must succeed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import CommandFailed, ModuleError

pytestmark = pytest.mark.vm

CHARDEV = "modules/chardev"  # relative to this file
DEVICE = "/dev/harness_chardev"


def test_ioctl_driver_with_its_user_space_client(kmod, guest, dmesg):
    with kmod(CHARDEV):
        # The device's name has brackets and parentheses: matched literally.
        line = dmesg.expect("harness_chardev: registered (minor ")
        assert line.endswith(") [ok]")
        client = guest.program("modules/chardev/client/hcd_client.c",
                               "modules/chardev/harness_chardev.h")
        assert client.check_output(DEVICE, "set", 40) == "40"
        assert client.check_output(DEVICE, "add", 2) == "42"
        assert client.check_output(DEVICE, "get") == "42"
        assert guest.check_output(["cat", DEVICE]) == "42"
        unknown = client.run(DEVICE, "bogus")
        assert unknown.exit_status == 1
        assert "Inappropriate ioctl for device" in unknown.stderr  # ENOTTY from the driver
    dmesg.expect("harness_chardev: gone (value was 42)")
    assert not guest.exists(DEVICE)


def test_procfs_and_sysfs_interfaces(kmod, guest, dmesg):
    with kmod("modules/knobs"):
        assert guest.check_output("cat /proc/harness_knobs") == "value: 7\nwrites: 0"
        knob = "/sys/kernel/harness_knobs/value"
        # Writing needs root (mode 0644): as the login user the command fails, loudly.
        with pytest.raises(CommandFailed, match=r"as vagrant exited 1") as refused:
            guest.check_output(f"echo 5 > {knob}")
        assert "Permission denied" in str(refused.value)
        guest.check_output(f"echo 5 > {knob}", sudo=True)
        assert guest.read_text(knob) == "5\n"
        # A value the kernel rejects: the write fails with the driver's -EINVAL.
        rejected = guest.run(["tee", knob], sudo=True, stdin="nonsense\n")
        assert rejected.exit_status != 0 and "Invalid argument" in rejected.stderr
        assert guest.check_output("cat /proc/harness_knobs") == "value: 5\nwrites: 1"
        dmesg.expect("harness_knobs: value set to 5 (write #1)")
    assert not guest.exists("/proc/harness_knobs")


def test_a_folder_with_two_modules_loads_them_in_dependency_order(kmod, guest, dmesg):
    pair = kmod.all("modules/twomods")
    # harness_user needs harness_exporter's symbol: it comes second whatever the names say.
    assert pair.names == ["harness_exporter", "harness_user"]
    assert pair["harness_user"].dependencies() == ["harness_exporter"]
    with pair:
        assert {"harness_exporter", "harness_user"} <= guest.loaded_modules()
        dmesg.expect("harness_user: 40 + 2 = 42")
    assert not {"harness_exporter", "harness_user"} & guest.loaded_modules()
    lines = dmesg.grep(re.compile(r"harness_(user|exporter): (loaded|unloaded|40)"))
    assert lines == ["harness_exporter: loaded", "harness_user: 40 + 2 = 42",
                     "harness_user: unloaded", "harness_exporter: unloaded"]


def test_one_module_of_a_pair_brings_what_it_depends_on(kmod, guest):
    with pytest.raises(ModuleError, match=r"builds 2 modules \(harness_exporter, "
                                          r"harness_user\).*kmod.all"):
        kmod("modules/twomods").load()
    kmod("modules/twomods", name="harness_user").load()
    assert {"harness_exporter", "harness_user"} <= guest.loaded_modules()
    # Both are left loaded on purpose: the harness unloads them after the test, the user
    # first (the next test checks).


def test_modules_left_loaded_were_unloaded_newest_first(guest):
    assert not {"harness_exporter", "harness_user"} & guest.loaded_modules()


def test_files_go_into_the_guest_and_come_back(guest, tmp_path):
    config = tmp_path / "settings.conf"
    config.write_text("speed=fast\n")
    remote = guest.put(config)
    assert guest.check_output(["cat", remote]) == "speed=fast"
    guest.write_text("/etc/harness-example.conf", "owned by root\n", mode=0o600, sudo=True)
    assert guest.check_output(["stat", "-c", "%U %a", "/etc/harness-example.conf"]) == \
        "root 600"
    with pytest.raises(CommandFailed):
        guest.check_output(["cat", "/etc/harness-example.conf"])  # not readable as vagrant
    assert guest.read_text("/etc/harness-example.conf", sudo=True) == "owned by root\n"
    back = guest.get(remote, tmp_path / "back" / "settings.conf")
    assert back.read_text() == "speed=fast\n"
    guest.run(["rm", "-f", "/etc/harness-example.conf"], sudo=True)


def test_a_failing_command_says_what_ran_how_it_ended_and_what_it_printed(guest):
    with pytest.raises(CommandFailed) as failure:
        guest.check_output("cat /proc/no_such_file")
    message = str(failure.value)
    assert message.startswith("`cat /proc/no_such_file` as vagrant exited 1 (expected 0)")
    assert "stderr:\n  cat: /proc/no_such_file: No such file or directory" in message
    assert guest.run("cat /proc/no_such_file").exit_status == 1  # run() never raises
    assert guest.check_output("whoami") == "vagrant"
    assert guest.check_output("whoami", sudo=True) == "root"


def test_harness_run_loads_a_two_module_folder_in_dependency_order():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "tests/vm/modules/twomods"],
        cwd=root, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    steps = ["after insmod harness_exporter", "after insmod harness_user",
             "after rmmod harness_user", "after rmmod harness_exporter"]
    assert [out.index(step) for step in steps] == sorted(out.index(step) for step in steps)
    assert "harness_user: 40 + 2 = 42" in out
