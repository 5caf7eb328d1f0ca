"""The guests' network: the harness's own management network and its settings for Vagrant."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import HostError
from harness.guestnet import (
    DNSMASQ_NS,
    ManagementNetwork,
    ensure_management_network,
    free_subnet,
    management_network_xml,
    network_subnet,
)
from harness.hostexec import HostCommandError


def test_the_network_answers_dhcp_without_dnsmasqs_ping():
    xml = management_network_xml("harness", "192.168.124.0/24")
    root = ET.fromstring(xml)
    assert root.findtext("name") == "harness"
    assert root.find("forward").get("mode") == "nat"
    ip = root.find("ip")
    assert (ip.get("address"), ip.get("netmask")) == ("192.168.124.1", "255.255.255.0")
    dhcp_range = ip.find("dhcp/range")
    assert (dhcp_range.get("start"), dhcp_range.get("end")) == ("192.168.124.2",
                                                                "192.168.124.254")
    options = [o.get("value") for o in root.iter(f"{{{DNSMASQ_NS}}}option")]
    assert options == ["no-ping"]
    assert network_subnet(xml) == "192.168.124.0/24"


def test_a_subnet_in_use_anywhere_is_skipped():
    assert free_subnet([]) == "192.168.124.0/24"
    assert free_subnet(["192.168.124.0/24", "192.168.125.7", "10.0.0.0/8"]) == "192.168.126.0/24"
    with pytest.raises(HostError, match="no free"):  # a route over all of them
        free_subnet(["192.168.0.0/16", "fe80::/64"])


def test_libvirts_own_network_xml_gives_its_subnet():
    xml = ("<network><name>default</name><ip address='192.168.122.1' netmask='255.255.255.0'>"
           "</ip></network>")
    assert network_subnet(xml) == "192.168.122.0/24"
    assert network_subnet("<network><ip address='10.1.2.1' prefix='16'/></network>") == \
        "10.1.0.0/16"
    assert network_subnet("<network><name>isolated</name></network>") is None


class FakeVirsh:
    """virsh's network verbs over a dict of definitions (name -> xml) and a set of active ones."""

    def __init__(self, networks: dict[str, str], active: set[str]):
        self.networks, self.active, self.calls = networks, active, []

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        self.calls.append(args)
        verb = args[0]
        if verb == "net-dumpxml":
            if args[1] not in self.networks:
                raise HostCommandError(["virsh", *args], 1, "network not found")
            return self.networks[args[1]]
        if verb == "net-list":
            return "\n".join(self.active if "--all" not in args else self.networks)
        if verb == "net-define":
            xml = Path(args[1]).read_text()
            self.networks[ET.fromstring(xml).findtext("name")] = xml
            return ""
        if verb == "net-start":
            self.active.add(args[1])
        return ""


def test_the_network_is_made_once_on_a_free_subnet_and_started(monkeypatch):
    monkeypatch.setattr("harness.guestnet.host_subnets", lambda: ["192.168.124.0/24"])
    virsh = FakeVirsh({"default": "<network><ip address='192.168.125.1' "
                                  "netmask='255.255.255.0'/></network>"}, {"default"})
    said: list[str] = []
    made = ensure_management_network(virsh, said.append)
    assert made == ManagementNetwork("harness", "192.168.126.0/24")
    assert "harness" in virsh.active and "no-ping" in virsh.networks["harness"]
    assert any("defining libvirt network 'harness'" in s for s in said)
    virsh.active.discard("harness")  # stopped since (a host restart without autostart)
    again = ensure_management_network(virsh, said.append)
    assert again == made and "harness" in virsh.active
    assert sum(1 for c in virsh.calls if c[0] == "net-define") == 1
