"""The VM options, declared once: the table drives pytest's ``--vm-*`` options, the command
line's flags (``harness run/vm/grade``) and the arguments the grader passes to its pytest run.

:class:`VMOptions` is what a user chose, from any front end; a value nobody gave is ``None``
on the parsers and becomes the product's default here (or the environment's, for the remote
libvirt host), so every front end shows and uses the same defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_MEMORY_MIB = 2048
DEFAULT_CPUS = 2
DRIVERS = ("auto", "kvm", "qemu")
# Where a module is built (harness.build) and how leaks are checked (harness.leaks): declared
# here, with the other choices, so the command line's parser needs neither module.
BUILD_MODES = ("auto", "host", "guest")
LEAK_CHECK_MODES = ("auto", "kmemleak", "ledger", "off")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass
class VMOptions:
    """What a user chose about the VM; the defaults are the product's."""

    box: str | None = None  # catalogue name or Vagrant box name; None: the catalogue's default
    driver: str = "auto"  # auto | kvm | qemu
    memory: int = DEFAULT_MEMORY_MIB
    cpus: int = DEFAULT_CPUS
    boxes_file: Path | None = None
    # A remote libvirt host reached over SSH (default: $HARNESS_LIBVIRT_HOST, else this machine).
    libvirt_host: str | None = field(default_factory=lambda: _env("HARNESS_LIBVIRT_HOST"))
    libvirt_user: str = field(default_factory=lambda: _env("HARNESS_LIBVIRT_USER") or "root")
    libvirt_ssh_key: str | None = field(default_factory=lambda: _env("HARNESS_LIBVIRT_SSH_KEY"))
    isolate_network: bool = False  # grading: the guest reaches nothing (see VMSettings)

    @classmethod
    def from_values(cls, given: Callable[[Option], Any]) -> VMOptions:
        """From any front end: ``given(option)`` is the value the user gave, or None (False
        for a switch); what was not given keeps the default, and a given value wins over the
        environment."""
        values = {option.field: given(option) for option in OPTIONS}
        return cls(**{name: value for name, value in values.items()
                      if value is not None and value is not False})

    @classmethod
    def from_config(cls, config) -> VMOptions:
        """From pytest's ``--vm-*`` options."""
        return cls.from_values(lambda option: config.getoption(option.pytest))

    @classmethod
    def from_args(cls, args) -> VMOptions:
        """From the command line's flags (and ``--boxes``, the catalogue file)."""
        options = cls.from_values(lambda option: getattr(args, option.dest, None))
        if getattr(args, "boxes", None):
            options.boxes_file = Path(args.boxes)
        return options

    def pytest_args(self) -> list[str]:
        """The same choices as options of a pytest run (the grader starts one)."""
        args = []
        for option in OPTIONS:
            value = getattr(self, option.field)
            if option.switch:
                args += [option.pytest] if value else []
            elif value is not None:
                args.append(f"{option.pytest}={value}")
        return args


@dataclass(frozen=True)
class Option:
    """One VM option: the :class:`VMOptions` field it sets, its names on the command line and
    in pytest, and what it takes."""

    field: str
    cli: str  # harness run/vm/grade
    pytest: str  # pytest -m vm
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value

    @property
    def dest(self) -> str:
        return self.cli.lstrip("-").replace("-", "_")

    def parser_kwargs(self) -> dict[str, Any]:
        """What argparse's ``add_argument`` and pytest's ``addoption`` both take."""
        if self.switch:
            return {"action": "store_true", "help": self.help}
        default = _DEFAULTS.get(self.field)
        shown = f" (default: {default})" if default not in (None, "") else ""
        kwargs: dict[str, Any] = {"default": None, "help": self.help + shown}
        if self.type is not str:
            kwargs["type"] = self.type
        if self.choices:
            kwargs["choices"] = list(self.choices)
        return kwargs


OPTIONS: tuple[Option, ...] = (
    Option("box", "--box", "--vm-box", "box from boxes.yaml (default: the catalogue's default)"),
    Option("driver", "--driver", "--vm-driver",
           "libvirt driver; auto probes KVM and falls back to qemu (TCG)", choices=DRIVERS),
    Option("memory", "--memory", "--vm-memory", "guest memory in MiB", type=int),
    Option("cpus", "--cpus", "--vm-cpus", "guest virtual CPUs", type=int),
    Option("libvirt_host", "--libvirt-host", "--vm-libvirt-host",
           "run the VMs on this remote libvirt host over SSH (vagrant-libvirt's "
           "host/connect_via_ssh; default $HARNESS_LIBVIRT_HOST)"),
    Option("libvirt_user", "--libvirt-user", "--vm-libvirt-user",
           "SSH user on the libvirt host (default $HARNESS_LIBVIRT_USER, else root)"),
    Option("libvirt_ssh_key", "--libvirt-key", "--vm-libvirt-key",
           "SSH private key for the libvirt host (default $HARNESS_LIBVIRT_SSH_KEY)"),
    Option("isolate_network", "--isolate-network", "--vm-isolate-network",
           "the guest answers the harness's SSH and reaches nothing else: no host service, no "
           "other guest, no route out (always on for harness grade)", switch=True),
)
# The defaults shown in help (those that do not come from the environment).
_DEFAULTS = {f.name: f.default for f in fields(VMOptions) if f.name in ("driver", "memory",
                                                                        "cpus")}
