"""VM options: one object, read the same from the CLI, from pytest's options and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.session import VMOptions
from harness.vm import DEFAULT_CPUS, DEFAULT_MEMORY_MIB


@pytest.fixture(autouse=True)
def no_libvirt_environment(monkeypatch):
    for name in ("HARNESS_LIBVIRT_HOST", "HARNESS_LIBVIRT_USER", "HARNESS_LIBVIRT_SSH_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pytest_options(pytester: pytest.Pytester):
    """VMOptions read by pytest's own parser, with the harness plugin's real options."""
    return lambda *args: VMOptions.from_config(pytester.parseconfig(*args))


def test_cli_defaults_are_the_options_defaults(pytest_options):
    args = build_parser().parse_args(["run", "modules/hello"])
    assert VMOptions.from_args(args) == VMOptions() == pytest_options()
    assert (VMOptions().memory, VMOptions().cpus) == (DEFAULT_MEMORY_MIB, DEFAULT_CPUS)


def test_every_option_reaches_pytest_unchanged_from_the_command_line(pytest_options):
    args = build_parser().parse_args(
        ["grade", "--box", "debian-12-debug", "--memory", "3072", "--cpus", "1", "--driver",
         "qemu", "--libvirt-host", "kvm1.example", "--libvirt-user", "ci", "--libvirt-key",
         "/keys/ci", "--isolate-network", "--spec", "spec.yaml", "--out", "out", "subs"])
    from_cli = VMOptions.from_args(args)
    assert from_cli == VMOptions(box="debian-12-debug", memory=3072, cpus=1, driver="qemu",
                                 libvirt_host="kvm1.example", libvirt_user="ci",
                                 libvirt_ssh_key="/keys/ci", isolate_network=True)
    assert pytest_options(*from_cli.pytest_args()) == from_cli


def test_one_table_declares_every_option_of_both_front_ends(pytester: pytest.Pytester):
    from harness.vmoptions import OPTIONS

    config = pytester.parseconfig()
    cli = build_parser().parse_args(["vm", "up"])
    for option in OPTIONS:
        assert config.getoption(option.pytest) in (None, False), option
        assert getattr(cli, option.dest) in (None, False), option
    assert {o.field for o in OPTIONS} == {f for f in VMOptions.__dataclass_fields__
                                          if f != "boxes_file"}


def test_given_options_win_over_the_environment(monkeypatch, pytest_options):
    monkeypatch.setenv("HARNESS_LIBVIRT_HOST", "from-env.example")
    monkeypatch.setenv("HARNESS_LIBVIRT_USER", "envuser")
    assert pytest_options().libvirt_host == "from-env.example"
    chosen = pytest_options("--vm-libvirt-host=given.example")
    assert (chosen.libvirt_host, chosen.libvirt_user) == ("given.example", "envuser")


def test_a_boot_that_outlasts_vagrant_libvirts_address_wait_is_recognised():
    """vagrant-libvirt waits 300 x 2 s for the guest's DHCP address; a KASAN guest's first boot
    under emulation can take longer, and then `vagrant up` is tried once more."""
    from harness.vagrant_machine import address_wait_timed_out

    log = Path(__file__).parent / "data" / "vagrant_up_address_timeout.log"
    assert address_wait_timed_out(log.read_text())
    assert not address_wait_timed_out("==> default: Waiting for domain to get an IP address...\n"
                                      "==> default: Waiting for SSH to become available...\n")
    assert not address_wait_timed_out("Error while creating domain: Fog::Errors::TimeoutError")


def test_the_vm_folders_of_a_project_are_laid_out_in_one_place(tmp_path):
    from harness.paths import other_vm_project_dirs, vm_project_dir

    assert vm_project_dir(tmp_path) == tmp_path
    worker = vm_project_dir(tmp_path, "gw1")
    assert worker == tmp_path / ".harness" / "workers" / "gw1"
    assert vm_project_dir(tmp_path, "gw1", "debian-12-debug") == \
        worker / ".harness" / "boxes" / "debian-12-debug"
    workers_box = vm_project_dir(tmp_path, "gw1", "debian-11")  # a matrix run's, with -n 2
    for folder in (worker, vm_project_dir(tmp_path, box="debian-12-k6.12"), workers_box):
        (folder / ".harness").mkdir(parents=True)
    (tmp_path / ".harness" / "workers" / "gw2").mkdir()  # no VM in it
    assert other_vm_project_dirs(tmp_path) == [
        ("grading/xdist worker gw1", worker),
        ("box debian-12-k6.12", tmp_path / ".harness" / "boxes" / "debian-12-k6.12"),
        ("box debian-11", workers_box)]
