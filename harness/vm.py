"""VM lifecycle on python-vagrant: up, connect, the clean snapshot, restore, halt, destroy.

The VM is described by :class:`VMSettings` (box, libvirt driver, memory, cpus) and lives in a
project's state folder (``.harness/``). It puts together the parts each concern owns: the
Vagrant machine (:mod:`harness.vagrant_machine`), the libvirt domain for what Vagrant has no
verb for (:mod:`harness.libvirt`: internal qcow2 snapshots with memory, seconds instead of a
reboot), the guests' network and its isolation (:mod:`harness.guestnet`), the serial console
and its per-test archive (:mod:`harness.console`), and what the clean snapshot needs around it
(:mod:`harness.surroundings`). A VM powered off with its clean snapshot kept resumes from it
instead of booting. The libvirt host is this machine or a remote one reached over SSH
(vagrant-libvirt's ``connect_via_ssh``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.boxes import Box, DirectBoot
from harness.console import (
    LocalSerialConsole,
    RemoteSerialConsole,
    SerialArchive,
    SerialConsole,
    SerialPanicWatch,
)
from harness.errors import CommandFailed, GuestUnreachable, HostError, VMError
from harness.guestnet import (
    ManagementNetwork,
    apply_isolation,
    ensure_management_network,
    existing_management_network,
)
from harness.hostexec import HostCommandError
from harness.libvirt import LIBVIRT_URI, LibvirtDomain
from harness.paths import state_dir
from harness.surroundings import SURROUNDINGS_FILE, SnapshotSurroundings
from harness.transport import SSHTarget, SSHTransport
from harness.vagrant_machine import VagrantMachine, domain_prefix
from harness.vmoptions import DEFAULT_CPUS, DEFAULT_MEMORY_MIB

CLEAN_SNAPSHOT = "harness-clean"
@dataclass
class VMSettings:
    box: Box
    driver: str = "qemu"  # libvirt driver: kvm or qemu (TCG)
    memory: int = DEFAULT_MEMORY_MIB
    cpus: int = DEFAULT_CPUS
    boot_timeout: int = 600
    # A remote libvirt host (vagrant-libvirt's host/connect_via_ssh); None: this machine.
    libvirt_host: str | None = None
    libvirt_user: str = "root"
    libvirt_ssh_key: str | None = None
    # Grading: the guest answers the harness's SSH and nothing else reaches it or leaves it
    # (a libvirt network filter on its NIC; see isolation_filter_xml).
    isolate_network: bool = False
    # A box the harness built boots its kernel directly (libvirt's kernel/initrd/cmdline, the
    # box build's copies in libvirt's pool): no bootloader, no BIOS disk reads. None: the
    # box's own bootloader (a cloud box, a remote libvirt host, copies not in the pool).
    direct_boot: DirectBoot | None = None

    @property
    def guest_os(self) -> str:
        """Vagrant's guest type for a box the harness built: the Vagrantfile's own "harness"
        type (Debian, with no guest capabilities: Vagrant neither probes the guest OS over SSH
        after boot, about 10 s under emulation, nor edits its fstab); empty: let Vagrant
        probe."""
        return "harness" if self.box.is_local else ""

    @property
    def libvirt_uri(self) -> str:
        """libvirt's own URI for the same connection vagrant-libvirt makes."""
        if not self.libvirt_host:
            return LIBVIRT_URI
        keyfile = f"?keyfile={self.libvirt_ssh_key}" if self.libvirt_ssh_key else ""
        return f"qemu+ssh://{self.libvirt_user}@{self.libvirt_host}/system{keyfile}"


@dataclass
class VM:
    """One Vagrant machine for a project folder."""

    settings: VMSettings
    project_dir: Path
    log: object = field(default=None, repr=False)  # a text stream for progress lines
    _transport: SSHTransport | None = field(default=None, init=False, repr=False)
    _network: ManagementNetwork | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.project_dir = self.project_dir.resolve()
        self.state = state_dir(self.project_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.serial_log = self.state / "serial.log"
        self.log = self.log or sys.stderr
        self.vagrant = VagrantMachine(self.project_dir, self.state, self._vagrant_settings,
                                      say=self.say, progress=self._progress)
        self.domain = LibvirtDomain(self.settings.libvirt_uri, self.vagrant.id_file)
        st = self.settings
        self.console: SerialConsole = (
            RemoteSerialConsole.over_ssh(f"/var/tmp/{domain_prefix(self.project_dir)}serial.log",
                                         st.libvirt_host, st.libvirt_user, st.libvirt_ssh_key)
            if st.libvirt_host else LocalSerialConsole(self.serial_log))
        self.serial = SerialArchive(self.console, self.state / "serial")
        self.surroundings = SnapshotSurroundings(self.state / SURROUNDINGS_FILE)

    def _vagrant_settings(self) -> dict[str, str]:
        """What the Vagrantfile reads: this VM's settings as HARNESS_* variables."""
        s = self.settings
        return {
            "HARNESS_PROJECT_DIR": str(self.project_dir),
            "HARNESS_BOX": s.box.vagrant_box,
            "HARNESS_DRIVER": s.driver,
            "HARNESS_MEMORY": str(s.memory),
            "HARNESS_CPUS": str(s.cpus),
            "HARNESS_BOOT_TIMEOUT": str(s.boot_timeout),
            "HARNESS_SERIAL_LOG": self.console.location,
            "HARNESS_DOMAIN_PREFIX": domain_prefix(self.project_dir),
            "HARNESS_LIBVIRT_HOST": s.libvirt_host or "",
            "HARNESS_LIBVIRT_USER": s.libvirt_user if s.libvirt_host else "",
            "HARNESS_LIBVIRT_SSH_KEY": s.libvirt_ssh_key or "",
            "HARNESS_GUEST": s.guest_os,
            "HARNESS_KERNEL": str(s.direct_boot.kernel) if s.direct_boot else "",
            "HARNESS_INITRD": str(s.direct_boot.initrd or "") if s.direct_boot else "",
            "HARNESS_CMDLINE": s.direct_boot.cmdline if s.direct_boot else "",
            **self._network_settings(),
        }

    def _network_settings(self) -> dict[str, str]:
        """The harness's own management network on this machine (quick leases; see
        :mod:`harness.guestnet`), made by :meth:`up`; other vagrant calls (destroy) name it
        when it is there. A remote libvirt host keeps vagrant-libvirt's own network."""
        if self.settings.libvirt_host:
            return {}
        if self._network is None:
            self._network = existing_management_network(self.domain.virsh)
        if self._network is None:
            return {}
        return {"HARNESS_NETWORK": self._network.name,
                "HARNESS_NETWORK_ADDRESS": self._network.address}

    def say(self, text: str) -> None:
        print(f"harness: {text}", file=self.log, flush=True)

    def _progress(self, line: str) -> None:
        print("  " + line, file=self.log, flush=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def status(self) -> str:
        """libvirt's word on the domain ("running", "shut off", ...), "not created" without
        one. Not vagrant's: it says "inaccessible" for a resumed guest whose DHCP lease it
        cannot find."""
        return self.domain.state() or "not created"

    def is_running(self) -> bool:
        """libvirt's word, not vagrant's: quicker, and right for a resumed guest whose DHCP lease
        vagrant cannot find."""
        return self.domain.state() == "running"

    def up(self) -> None:
        """Boot the VM (creating it on first use). Progress goes to the log stream."""
        started = time.monotonic()
        self.serial.restart(continued=False)  # a new QEMU process starts the file afresh
        self.say(f"starting VM {self.settings.box.vagrant_box} (driver {self.settings.driver}, "
                 f"{self.settings.memory} MiB, {self.settings.cpus} CPUs); "
                 f"console log {self.console.location}")
        if not self.settings.libvirt_host:
            try:
                self._network = ensure_management_network(self.domain.virsh, self.say)
            except HostError as err:
                self.say(f"the guest goes on vagrant-libvirt's own network ({err})")
        self.vagrant.up()
        self.say(f"VM up in {time.monotonic() - started:.0f} s")
        self.surroundings.forget()  # a new boot: no clean snapshot yet
        self._retarget()
        self.apply_network_policy()

    def power_off(self) -> None:
        """Stop the domain at once but keep it, its disk and its snapshots: the next run resumes
        from the clean snapshot (memory included) instead of booting."""
        self.close()
        self.domain.stop_now()

    def halt(self) -> None:
        self.close()
        self.vagrant.halt()

    def destroy(self) -> None:
        self.close()
        self.domain.delete_snapshots()
        self.vagrant.destroy()
        self.surroundings.forget()

    # -- SSH ------------------------------------------------------------------------------------
    def ssh_target(self) -> SSHTarget:
        """The guest's SSH: the address recorded with the clean snapshot of the current boot
        when there is one (a resumed guest keeps its snapshot's address, while vagrant's, read
        from DHCP leases, may be gone or stale), else what vagrant says."""
        saved = self.surroundings.ssh_target()
        if saved is not None and self.domain.state() == "running":
            return saved
        return self.vagrant.ssh_target(self.settings.box.user)

    def _retarget(self) -> None:
        """After a new boot or a revert the guest's address may differ; whoever holds the
        transport keeps using it, so its target is updated in place."""
        if self._transport is not None:
            self._transport.close()
            self._transport.target = self.ssh_target()

    def transport(self) -> SSHTransport:
        if self._transport is None:
            self._transport = SSHTransport(self.ssh_target(),
                                           death_watch=SerialPanicWatch(self.console))
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def wait_for_ssh(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                # The connections the next commands (the test's, the harness's) use are opened
                # while waiting, both at once (each costs 0.5-2 s under emulation).
                self.transport().dial()
                self.transport().run("true", timeout=20, sudo=True).check()
                return
            except (GuestUnreachable, CommandFailed) as err:
                last = err
                self.close()
                time.sleep(0.5)  # a reverted guest answers about 3 s after the revert
        raise VMError(f"the guest did not answer over SSH within {timeout:.0f} s: {last}")

    # -- the clean snapshot -----------------------------------------------------------------------
    def has_snapshot(self, name: str = CLEAN_SNAPSHOT) -> bool:
        return name in self.domain.snapshots()

    def save_snapshot(self, name: str = CLEAN_SNAPSHOT) -> None:
        self.domain.save_snapshot(name, "clean booted state, taken by harness")
        self.surroundings.record(self.domain.attached_networks(),
                                 self._transport.target if self._transport is not None else None)

    def restore_snapshot(self, name: str = CLEAN_SNAPSHOT, archive_as: str | None = None) -> float:
        """Revert to the snapshot; the serial log so far is archived first (libvirt truncates it).

        Returns the seconds it took.
        """
        started = time.monotonic()
        self.domain.require()
        self.close()
        self.archive_serial_log(archive_as)
        try:
            self.domain.ensure_networks(self.surroundings.networks(), self.say)
            how = self.domain.revert(name)
        except HostCommandError as err:
            raise VMError(f"reverting to snapshot {name!r} failed: {err}") from err
        # loadvm keeps the QEMU process and its console file; libvirt's revert starts a new
        # process, which empties the file.
        self.serial.restart(continued=how == "loadvm")
        self._retarget()
        self.apply_network_policy()  # the snapshot's XML may say otherwise
        self.wait_for_ssh(timeout=90)
        return time.monotonic() - started

    def reboot(self) -> float:
        """Hard reset through libvirt, then wait for SSH: the fallback when a revert fails."""
        started = time.monotonic()
        self.close()
        self.domain.reset()
        self.wait_for_ssh(timeout=300)
        return time.monotonic() - started

    # -- network policy ---------------------------------------------------------------------------
    def apply_network_policy(self) -> bool:
        """The isolation filter on or off, as ``settings.isolate_network`` says (again after
        each revert: the snapshot's XML may say otherwise)."""
        return apply_isolation(self.domain, self.settings.isolate_network, self.say)

    # -- serial console -------------------------------------------------------------------------
    def serial_archive_path(self, name: str) -> Path:
        """Where the serial log archived under ``name`` (e.g. a test id) is kept."""
        return self.serial.path(name)

    def archive_serial_log(self, name: str | None) -> Path | None:
        """Copy what the serial console printed since the last restore (or boot) aside under
        ``.harness/serial/NAME.log`` (when it has content)."""
        return self.serial.save(name)
