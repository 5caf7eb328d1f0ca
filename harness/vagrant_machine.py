"""The project's Vagrant machine: python-vagrant over the harness's Vagrantfile.

Owns the Vagrant side of a VM: its folder (the project's own Vagrantfile, else a copy of the
packaged one), the environment the Vagrantfile reads its settings from, ``vagrant up`` (its
output streamed without progress counters, one more try when vagrant-libvirt's fixed address
wait runs out), status, halt, destroy, ``vagrant ssh-config`` read into an SSH target, and what
a failed call says (the end of ``vagrant.log``). :class:`harness.vm.VM` holds one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import vagrant

from harness.errors import VMError
from harness.transport import SSHTarget

PACKAGED_VAGRANTFILE = Path(__file__).parent / "data" / "Vagrantfile"


def domain_prefix(project_dir: Path) -> str:
    """The libvirt domain names' prefix of a project: unique per checkout path."""
    digest = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:10]
    return f"harness-{digest}-"


@dataclass
class VagrantMachine:
    """python-vagrant calls for one project's machine, with their log (``vagrant.log``)."""

    project_dir: Path
    state: Path  # the project's .harness folder
    settings: Callable[[], dict[str, str]]  # the HARNESS_* values the Vagrantfile reads
    say: Callable[[str], None] = field(repr=False)
    progress: Callable[[str], None] = field(repr=False)  # a line of `vagrant up`'s output
    # (host, port, user) that this process's last `vagrant up` printed; None: ask ssh-config
    booted_at: tuple[str, int, str | None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_file = self.state / "vagrant.log"
        self.folder = self._folder()

    @property
    def id_file(self) -> Path:
        """Where vagrant-libvirt records the libvirt domain's id."""
        return self.folder / ".vagrant" / "machines" / "default" / "libvirt" / "id"

    def _folder(self) -> Path:
        """The project's own Vagrantfile when it has one, else a copy of the packaged one."""
        if (self.project_dir / "Vagrantfile").is_file():
            return self.project_dir
        folder = self.state / "vagrant"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "Vagrantfile"
        if not target.is_file() or target.read_bytes() != PACKAGED_VAGRANTFILE.read_bytes():
            shutil.copyfile(PACKAGED_VAGRANTFILE, target)
        return folder

    def env(self) -> dict[str, str]:
        return {**os.environ, "VAGRANT_DEFAULT_PROVIDER": "libvirt", **self.settings()}

    def client(self) -> vagrant.Vagrant:
        return vagrant.Vagrant(
            root=str(self.folder), env=self.env(),
            out_cm=vagrant.make_file_cm(str(self.log_file)),
            err_cm=vagrant.make_file_cm(str(self.log_file)),
        )

    def failed(self, what: str) -> VMError:
        tail = ""
        if self.log_file.is_file():
            tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
        return VMError(
            f"`vagrant {what}` failed (full log: {self.log_file}); run `harness doctor` to "
            f"check the host. Last lines:\n{tail}"
        )

    def status(self) -> str:
        try:
            states = self.client().status()
        except subprocess.CalledProcessError as err:
            raise self.failed("status") from err
        return states[0].state if states else "unknown"

    def up(self) -> None:
        """``vagrant up``, its output streamed to ``progress`` (and all of it to the log)."""
        v = vagrant.Vagrant(root=str(self.folder), env=self.env(),
                            err_cm=vagrant.make_file_cm(str(self.log_file)))
        for attempt in (1, 2):
            logged_before = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                said: list[str] = []
                with open(self.log_file, "a") as log:
                    for line in v.up(provider="libvirt", stream_output=True):
                        log.write(line)
                        log.flush()
                        shown = progress_free(line)
                        if shown:
                            self.progress(shown)
                            said.append(shown)
                self.booted_at = address_from_up(said)
                return
            except subprocess.CalledProcessError as err:
                with open(self.log_file, errors="replace") as log:
                    log.seek(logged_before)
                    if attempt == 1 and address_wait_timed_out(log.read()):
                        self.say("the guest got no address within vagrant-libvirt's fixed wait "
                                 "(10 min; a slow boot under emulation): booting once more")
                        continue
                raise self.failed("up") from err

    def halt(self) -> None:
        self.booted_at = None
        with contextlib.suppress(subprocess.CalledProcessError):
            self.client().halt(force=True)

    def destroy(self) -> None:
        self.booted_at = None
        try:
            self.client().destroy()
        except subprocess.CalledProcessError as err:
            raise self.failed("destroy") from err

    def ssh_target(self, default_user: str) -> SSHTarget:
        """Where vagrant says the guest's SSH is, read by paramiko's own ssh_config parser (it
        expands %h/%p in the ProxyCommand vagrant-libvirt uses for a remote libvirt host).
        Right after this process's ``vagrant up`` on this machine, what it printed (address,
        user) with Vagrant's insecure key: a ``vagrant ssh-config`` costs 1.5 s."""
        key = vagrant_home() / "insecure_private_key"
        if self.booted_at is not None and not self.env().get("HARNESS_LIBVIRT_HOST") \
                and key.is_file():
            host, port, user = self.booted_at
            return SSHTarget(host, port, user or default_user, str(key), None)
        try:
            text = self.client().ssh_config()
        except subprocess.CalledProcessError as err:
            raise self.failed("ssh-config") from err
        return ssh_target_from_config(text, default_user)


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or "~/.vagrant.d").expanduser()


def address_from_up(lines: list[str]) -> tuple[str, int, str | None] | None:
    """``SSH address: 192.168.121.7:22`` and ``SSH username: vagrant`` from ``vagrant up``."""
    address = next((line.split("SSH address:", 1)[1].strip() for line in lines
                    if "SSH address:" in line), None)
    if not address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    user = next((line.split("SSH username:", 1)[1].strip() for line in lines
                 if "SSH username:" in line), None)
    return (host, int(port), user) if port.isdigit() else None


def address_wait_timed_out(vagrant_output: str) -> bool:
    """Whether ``vagrant up`` gave up waiting for the guest's DHCP address: vagrant-libvirt waits
    a fixed 300 x 2 s, which a KASAN kernel's first boot under emulation can outlast (it then
    removes the domain, so another ``vagrant up`` starts afresh)."""
    return ("Waiting for domain to get an IP address" in vagrant_output
            and "Fog::Errors::TimeoutError" in vagrant_output)


_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROGRESS = re.compile(r"^\s*Progress: \d+%")


def progress_free(line: str) -> str:
    """Vagrant's output line without its in-place progress counter (``\\rProgress: 42%``
    repeated thousands of times on one line): what is worth a line in a log. The raw output
    stays in vagrant.log."""
    segments = _TERMINAL_ESCAPE.sub("", line).split("\r")
    return " ".join(seg.strip() for seg in segments
                    if seg.strip() and not _PROGRESS.match(seg)).strip()


def ssh_target_from_config(text: str, default_user: str) -> SSHTarget:
    """The first host of an OpenSSH config text (what ``vagrant ssh-config`` prints)."""
    config = paramiko.SSHConfig.from_text(text)
    names = [name for name in config.get_hostnames() if name != "*"]
    if not names:
        raise VMError(f"vagrant printed no SSH host:\n{text}")
    conf = config.lookup(names[0])
    return SSHTarget(conf["hostname"], int(conf.get("port", 22)), conf.get("user", default_user),
                     (conf.get("identityfile") or [""])[0], conf.get("proxycommand"))
