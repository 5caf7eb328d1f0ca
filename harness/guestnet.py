"""The guests' network: the libvirt network their first NIC is on, and what may cross it.

- The harness's own management network (``harness``) on this machine: a NAT network like
  vagrant-libvirt's own, whose dnsmasq hands out a new address at once. By default dnsmasq
  pings an address for 3 s before it offers it, so every new VM (a new MAC) waited 3 s for its
  lease; here only dnsmasq gives out addresses, so the ping guards nothing. Its subnet is the
  first 192.168.N.0/24 that no libvirt network, host address or route uses.
- The isolation policy: a libvirt network filter on the guest's interfaces (grading: the
  guest answers the harness's SSH and nothing else reaches it or leaves it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HostError
from harness.hostexec import HostCommandError, run
from harness.libvirt import LibvirtDomain, with_xml_file

MANAGEMENT_NETWORK = "harness"
# Where a free subnet is looked for: vagrant-libvirt's (121) and libvirt's default (122) are
# left to them.
CANDIDATE_SUBNETS = tuple(f"192.168.{n}.0/24" for n in range(124, 255))
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
ISOLATION_FILTER_FILE = Path(__file__).parent / "data" / "guest-isolation.nwfilter.xml"
ISOLATION_FILTER = "harness-guest-isolation"


@dataclass(frozen=True)
class ManagementNetwork:
    """What vagrant-libvirt is told: the network's name and its subnet (it checks both)."""

    name: str
    address: str  # "192.168.124.0/24"


def management_network_xml(name: str, subnet: str) -> str:
    net = ipaddress.ip_network(subnet)
    hosts = list(net.hosts())
    ET.register_namespace("dnsmasq", DNSMASQ_NS)
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "forward", mode="nat")
    ET.SubElement(root, "bridge", stp="on", delay="0")
    ip = ET.SubElement(root, "ip", address=str(hosts[0]), netmask=str(net.netmask))
    dhcp = ET.SubElement(ip, "dhcp")
    ET.SubElement(dhcp, "range", start=str(hosts[1]), end=str(hosts[-1]))
    options = ET.SubElement(root, f"{{{DNSMASQ_NS}}}options")
    ET.SubElement(options, f"{{{DNSMASQ_NS}}}option", value="no-ping")
    return ET.tostring(root, encoding="unicode")


def network_subnet(xml: str) -> str | None:
    """The IPv4 subnet of a libvirt network's definition ("192.168.124.0/24")."""
    ip = ET.fromstring(xml).find("ip")
    if ip is None or not ip.get("address"):
        return None
    prefix = ip.get("prefix") or ip.get("netmask") or "24"
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_network(f"{ip.get('address')}/{prefix}", strict=False))
    return None


def free_subnet(used: Iterable[str]) -> str:
    """The first candidate subnet that overlaps none of ``used`` (subnets or addresses)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    for candidate in CANDIDATE_SUBNETS:
        net = ipaddress.ip_network(candidate)
        if not any(net.overlaps(t) for t in taken if t.version == 4):
            return candidate
    raise HostError("no free 192.168.N.0/24 subnet for the harness's libvirt network")


# Where the host's own IPv4 subnets are listed: a command, and the field of each line that
# holds an address or subnet ("default" and other words are skipped).
HOST_SUBNET_SOURCES = ((("ip", "-4", "-o", "addr", "show"), 3), (("ip", "-4", "route", "show"), 0))


def host_subnets() -> list[str]:
    """The host's own IPv4 addresses and routes: a new network must not shadow them."""
    used = []
    for argv, column in HOST_SUBNET_SOURCES:
        with contextlib.suppress(HostCommandError, OSError):
            for line in run(list(argv), timeout=10).stdout.splitlines():
                fields = line.split()
                if len(fields) > column and fields[column][0].isdigit():
                    used.append(fields[column])
    return used


def existing_management_network(virsh: Callable[..., str]) -> ManagementNetwork | None:
    """The harness's management network when it is defined (nothing is changed)."""
    try:
        subnet = network_subnet(virsh("net-dumpxml", MANAGEMENT_NETWORK, timeout=20))
    except (HostCommandError, OSError):
        return None
    return ManagementNetwork(MANAGEMENT_NETWORK, subnet) if subnet else None


def ensure_management_network(virsh: Callable[..., str],
                              say: Callable[[str], None]) -> ManagementNetwork:
    """The harness's management network, defined, started and autostarted on first use."""
    name = MANAGEMENT_NETWORK
    existing = existing_management_network(virsh)
    if existing is not None:
        if name not in virsh("net-list", "--name").split():
            virsh("net-start", name)
        return existing
    used = host_subnets()
    for other in virsh("net-list", "--all", "--name").split():
        with contextlib.suppress(HostCommandError):
            used.append(network_subnet(virsh("net-dumpxml", other)) or "")
    subnet = free_subnet([u for u in used if u])
    say(f"defining libvirt network {name!r} ({subnet}): DHCP without dnsmasq's 3 s ping")
    try:
        with_xml_file(management_network_xml(name, subnet),
                      lambda path: virsh("net-define", path))
    except HostCommandError:
        # Another process (an xdist worker) defined it first: use theirs.
        subnet = network_subnet(virsh("net-dumpxml", name)) or subnet
    with contextlib.suppress(HostCommandError):
        virsh("net-autostart", name)
    with contextlib.suppress(HostCommandError):
        virsh("net-start", name)
    if name not in virsh("net-list", "--name").split():
        raise HostError(f"libvirt network {name!r} ({subnet}) would not start; "
                        f"see `virsh net-start {name}`")
    return ManagementNetwork(name, subnet)


def apply_isolation(domain: LibvirtDomain, isolate: bool,
                    say: Callable[[str], None]) -> bool:
    """Put the isolation filter on the guest's network interfaces, or take it off (a live
    change: a revert may undo it, so each revert applies it again). Returns whether the guest
    is isolated now."""
    wanted = ISOLATION_FILTER if isolate else None
    if wanted:
        domain.define_filter(ISOLATION_FILTER_FILE, ISOLATION_FILTER)
    for name in domain.set_interface_filter(wanted):
        say(f"guest network on {name}: "
            + ("isolated (it answers SSH, nothing else)" if wanted else "open"))
    return wanted is not None
