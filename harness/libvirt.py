"""One libvirt domain, through ``virsh``: its state, internal snapshots, the networks it is
attached to, and the network filter on its interfaces.

Vagrant (vagrant-libvirt) creates and removes the domain; everything done to it in between
that Vagrant has no verb for lives here. The connection is libvirt's own URI (this machine, or
a remote host over SSH), the same one vagrant-libvirt uses.
"""

from __future__ import annotations

import contextlib
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import VMError
from harness.hostexec import HostCommandError, run

LIBVIRT_URI = "qemu:///system"
# Domain states in which a snapshot is loaded into the running QEMU process (LibvirtDomain.revert).
IN_PLACE_STATES = ("running", "paused")


def virsh(uri: str, *args: str, timeout: float = 120.0) -> str:
    """``virsh -c URI ARGS...``'s output; a failure raises HostCommandError."""
    return run(["virsh", "-c", uri, *args], timeout=timeout).stdout


@dataclass
class LibvirtDomain:
    """The domain whose UUID vagrant-libvirt wrote to ``id_file`` (absent until it exists)."""

    uri: str
    id_file: Path

    @property
    def id(self) -> str | None:
        return self.id_file.read_text().strip() if self.id_file.is_file() else None

    def virsh(self, *args: str, timeout: float = 120.0) -> str:
        return virsh(self.uri, *args, timeout=timeout)

    def require(self) -> str:
        domain = self.id
        if not domain:
            raise VMError("the VM has not been created yet (no libvirt domain); bring it up first")
        return domain

    def state(self) -> str | None:
        """libvirt's own view: "running", "shut off", ... (None when there is no domain)."""
        domain = self.id
        if not domain:
            return None
        try:
            return self.virsh("domstate", domain).strip()
        except HostCommandError:
            return None

    # -- snapshots (internal qcow2 ones, memory included) -------------------------------------
    def snapshots(self) -> list[str]:
        domain = self.id
        if not domain:
            return []
        try:
            return self.virsh("snapshot-list", domain, "--name").split()
        except HostCommandError:
            return []

    def save_snapshot(self, name: str, description: str) -> None:
        domain = self.require()
        if name in self.snapshots():
            self.virsh("snapshot-delete", domain, name)
        self.virsh("snapshot-create-as", domain, name, "--description", description)

    def revert(self, name: str) -> str:
        """Back to the internal snapshot ``name``, running; says how.

        Both ways load the snapshot with QEMU's own ``loadvm`` (disks and memory, as libvirt's
        revert does), through libvirt's monitor passthrough, since libvirt has no verb for it
        (the domain's log notes it as tainted: custom-monitor):
        - a running (or paused) domain loads it into its own QEMU process: about 0.3-0.5 s
          here;
        - a stopped one is started paused, loads it, and is resumed: 5.5 s here, where
          libvirt's ``snapshot-revert`` of a stopped domain took 15.5 s side by side. Under
          emulation the new process also translates all guest code afresh, 3-4 s more before
          the guest answers, either way.
        libvirt's revert is the fallback when ``loadvm`` fails.
        """
        domain = self.require()
        if self.state() in IN_PLACE_STATES:
            if self._load(domain, name):
                return "loadvm"
        else:
            with contextlib.suppress(HostCommandError):
                self.virsh("start", "--paused", domain)
                if self._load(domain, name):
                    return "start+loadvm"
            self.stop_now()
        self.virsh("snapshot-revert", domain, name, "--running", "--force")
        return "snapshot-revert"

    def _load(self, domain: str, name: str) -> bool:
        """``loadvm name`` in the domain's QEMU process, then running; False if QEMU refused."""
        try:
            said = self.virsh("qemu-monitor-command", domain, "--hmp", f"loadvm {name}")
        except HostCommandError as err:
            said = str(err)
        if said.strip():  # HMP answers nothing when it worked, else the error
            return False
        if self.state() != "running":
            self.virsh("resume", domain)
        return True

    def delete_snapshots(self) -> None:
        with contextlib.suppress(HostCommandError):
            for name in self.snapshots():
                self.virsh("snapshot-delete", self.require(), name)

    # -- power ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """A hard reset; a domain that refuses it is stopped and started again."""
        domain = self.require()
        try:
            self.virsh("reset", domain)
        except HostCommandError:
            self.virsh("destroy", domain)
            self.virsh("start", domain)

    def stop_now(self) -> None:
        """Pull the plug (``virsh destroy``): the domain, its disk and snapshots stay."""
        domain = self.id
        if domain:
            with contextlib.suppress(HostCommandError):
                self.virsh("destroy", domain)

    # -- networks -------------------------------------------------------------------------------
    def attached_networks(self) -> dict[str, str]:
        """Network name -> its XML definition, for each libvirt network the domain is on."""
        networks = {}
        for line in self.virsh("domiflist", self.require()).splitlines()[2:]:
            fields = line.split()
            if len(fields) >= 3 and fields[1] == "network":
                networks[fields[2]] = self.virsh("net-dumpxml", fields[2])
        return networks

    def ensure_networks(self, networks: dict[str, str], say: Callable[[str], None]) -> None:
        """Define and start each network (name -> XML) that is gone or stopped."""
        if not networks:
            return
        defined = set(self.virsh("net-list", "--all", "--name").split())
        active = set(self.virsh("net-list", "--name").split())
        for name, xml in networks.items():
            if name not in defined:
                say(f"libvirt network {name!r} is gone; defining it again as it was")
                with_xml_file(xml, lambda path: self.virsh("net-define", path))
            if name not in active:
                self.virsh("net-start", name)

    def set_interface_filter(self, filter_name: str | None) -> list[str]:
        """Put the network filter ``filter_name`` on every interface (None: take filters off),
        live. Returns the names of the interfaces that changed."""
        domain = self.require()
        changed = []
        for interface in ET.fromstring(self.virsh("dumpxml", domain)).iterfind(
                "devices/interface"):
            current = interface.find("filterref")
            if (current.get("filter") if current is not None else None) == filter_name:
                continue
            if current is not None:
                interface.remove(current)
            if filter_name:
                ET.SubElement(interface, "filterref", filter=filter_name)
            with_xml_file(ET.tostring(interface, encoding="unicode"),
                                lambda path: self.virsh("update-device", domain, path, "--live"))
            device = interface.find("target")
            changed.append(device.get("dev", "?") if device is not None else "its interface")
        return changed

    def define_filter(self, definition: Path, name: str) -> None:
        """Define (or update to this version) a network filter; an update must name the UUID
        libvirt gave the filter first."""
        wanted = ET.parse(definition).getroot()
        try:
            existing = ET.fromstring(self.virsh("nwfilter-dumpxml", name))
            ET.SubElement(wanted, "uuid").text = existing.findtext("uuid")
        except HostCommandError:
            pass  # not defined yet
        with_xml_file(ET.tostring(wanted, encoding="unicode"),
                            lambda path: self.virsh("nwfilter-define", path))


def with_xml_file(xml: str, use: Callable[[str], object]) -> None:
    """Hand ``use`` the path of a temporary file holding ``xml`` (virsh's define verbs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as spec:
        spec.write(xml)
        spec.flush()
        use(spec.name)
