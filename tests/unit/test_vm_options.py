"""VM options: one object, read the same from the CLI, from pytest's options and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.session import VMOptions
from harness.vm import DEFAULT_CPUS, DEFAULT_MEMORY_MIB


class OptionsConfig:
    """What VMOptions.from_config reads of a pytest config: --vm-* options by name."""

    def __init__(self, args: list[str]):
        self.values: dict[str, object] = {
            "--vm-box": None, "--vm-driver": "auto", "--vm-memory": DEFAULT_MEMORY_MIB,
            "--vm-cpus": DEFAULT_CPUS, "--vm-isolate-network": False,
            "--vm-libvirt-host": None, "--vm-libvirt-user": None, "--vm-libvirt-key": None}
        for arg in args:
            name, _, value = arg.partition("=")
            default = self.values[name]
            self.values[name] = True if not value else int(value) if isinstance(
                default, int) and not isinstance(default, bool) else value

    def getoption(self, name: str) -> object:
        return self.values[name]


@pytest.fixture(autouse=True)
def no_libvirt_environment(monkeypatch):
    for name in ("HARNESS_LIBVIRT_HOST", "HARNESS_LIBVIRT_USER", "HARNESS_LIBVIRT_SSH_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_cli_defaults_are_the_options_defaults():
    args = build_parser().parse_args(["run", "modules/hello"])
    assert VMOptions.from_args(args) == VMOptions()


def test_cli_choices_reach_pytest_unchanged():
    args = build_parser().parse_args(
        ["grade", "--box", "debian-12-debug", "--memory", "3072", "--cpus", "1", "--driver",
         "qemu", "--libvirt-host", "kvm1.example", "--spec", "spec.yaml", "--out", "out", "subs"])
    from_cli = VMOptions.from_args(args)
    assert (from_cli.box, from_cli.memory, from_cli.cpus, from_cli.driver,
            from_cli.libvirt_host) == ("debian-12-debug", 3072, 1, "qemu", "kvm1.example")
    assert VMOptions.from_config(OptionsConfig(from_cli.pytest_args())) == from_cli


def test_given_options_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_LIBVIRT_HOST", "from-env.example")
    monkeypatch.setenv("HARNESS_LIBVIRT_USER", "envuser")
    assert VMOptions.from_config(OptionsConfig([])).libvirt_host == "from-env.example"
    chosen = VMOptions.from_config(OptionsConfig(["--vm-libvirt-host=given.example"]))
    assert (chosen.libvirt_host, chosen.libvirt_user) == ("given.example", "envuser")


def test_a_boot_that_outlasts_vagrant_libvirts_address_wait_is_recognised():
    """vagrant-libvirt waits 300 x 2 s for the guest's DHCP address; a KASAN guest's first boot
    under emulation can take longer, and then `vagrant up` is tried once more."""
    from harness.vm import address_wait_timed_out

    log = Path(__file__).parent / "data" / "vagrant_up_address_timeout.log"
    assert address_wait_timed_out(log.read_text())
    assert not address_wait_timed_out("==> default: Waiting for domain to get an IP address...\n"
                                      "==> default: Waiting for SSH to become available...\n")
    assert not address_wait_timed_out("Error while creating domain: Fog::Errors::TimeoutError")
