"""A graded guest reaches nothing: a libvirt network filter on its NIC lets the harness's SSH
in and drops everything else. The only target here is a listener this test starts on the host
side of the guest's own libvirt network (its default gateway)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.vm


class Listener:
    """A TCP and a UDP socket on one host address; records who got through."""

    def __init__(self, address: str):
        self.tcp = socket.create_server((address, 0))
        self.tcp.settimeout(0.5)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 0))
        self.udp.settimeout(0.5)
        self.address = address
        self.heard: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def tcp_port(self) -> int:
        return self.tcp.getsockname()[1]

    @property
    def udp_port(self) -> int:
        return self.udp.getsockname()[1]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.tcp.accept()
            except TimeoutError:
                continue
            self.heard.append(f"tcp from {peer[0]}")
            conn.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                _, peer = self.udp.recvfrom(100)
            except TimeoutError:
                continue
            self.heard.append(f"udp from {peer[0]}")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.tcp.close()
        self.udp.close()


@contextmanager
def listener_on_the_guests_gateway(guest) -> Iterator[Listener]:
    route = guest.check_output("ip -4 route show default").split()
    gateway = route[route.index("via") + 1]  # the host side of libvirt's network
    listener = Listener(gateway)
    try:
        yield listener
    finally:
        listener.close()


def reach(guest, listener: Listener) -> str:
    """Try TCP and UDP from the guest to the listener; what the guest saw."""
    tcp = guest.run(f"timeout 8 bash -c 'echo hi > /dev/tcp/{listener.address}/"
                    f"{listener.tcp_port}' && echo tcp-ok || echo tcp-failed", timeout=30)
    guest.run(f"for i in 1 2 3; do echo hi > /dev/udp/{listener.address}/{listener.udp_port}; "
              "sleep 0.3; done", timeout=30)
    return tcp.stdout.strip()


@pytest.fixture
def isolation(harness_session) -> Iterator[object]:
    vm = harness_session.vm
    yield vm
    vm.settings.isolate_network = False
    vm.apply_network_policy()


def test_an_isolated_guest_answers_ssh_and_reaches_nothing(guest, isolation):
    vm = isolation
    with listener_on_the_guests_gateway(guest) as listener:
        # Control: the same probe gets through an open network, so a failure below means
        # something.
        assert reach(guest, listener) == "tcp-ok"
        assert "tcp from" in " ".join(listener.heard) and "udp from" in " ".join(listener.heard)
        listener.heard.clear()

        vm.settings.isolate_network = True
        assert vm.apply_network_policy() is True
        assert reach(guest, listener) == "tcp-failed"
        assert guest.check_output("echo still answering") == "still answering"  # SSH in
        # A snapshot revert brings back the snapshot's own NIC settings: isolation is put back.
        vm.restore_snapshot(archive_as="isolation-test")
        assert reach(guest, listener) == "tcp-failed"
        # A module is kernel code: it can add routes. The filter sits outside the guest.
        guest.run("ip route add 0.0.0.0/1 via " + listener.address, sudo=True)
        assert reach(guest, listener) == "tcp-failed"
        guest.run("ip route del 0.0.0.0/1", sudo=True)
    assert listener.heard == []
