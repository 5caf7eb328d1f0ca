"""What the clean snapshot keeps beside it, and the serial console's per-test archive."""

from __future__ import annotations

from harness.console import LocalSerialConsole, SerialArchive
from harness.surroundings import SnapshotSurroundings
from harness.transport import SSHTarget


def test_the_snapshots_networks_and_address_are_kept_until_a_new_boot(tmp_path):
    kept = SnapshotSurroundings(tmp_path / "s.json")
    assert kept.networks() == {} and kept.ssh_target() is None  # nothing saved yet
    target = SSHTarget("192.168.124.7", 22, "vagrant", "/k")
    kept.record({"harness": "<network/>"}, target)
    again = SnapshotSurroundings(tmp_path / "s.json")  # another process reads it
    assert again.networks() == {"harness": "<network/>"}
    assert again.ssh_target() == target
    again.forget()
    assert kept.ssh_target() is None
    (tmp_path / "s.json").write_text("{not json")
    assert kept.networks() == {}  # a torn file is no snapshot's surroundings


def test_each_test_gets_what_the_console_printed_since_the_last_restore(tmp_path):
    console_file = tmp_path / "serial.log"
    console_file.write_text("boot lines\n")
    serial = SerialArchive(LocalSerialConsole(console_file), tmp_path / "serial")
    serial.restart(continued=True)  # loadvm: QEMU's process and its file go on
    with console_file.open("a") as console:
        console.write("BUG: oops in test one\n")
    saved = serial.save("tests/test_x.py::test_one[debian-12]")
    assert saved is not None and saved.parent == tmp_path / "serial"
    assert "/" not in saved.name and saved.read_text() == "BUG: oops in test one\n"
    assert serial.save(None) is None
    serial.restart(continued=False)  # a new QEMU process: the file starts afresh
    assert serial.save("whole").read_text() == "boot lines\nBUG: oops in test one\n"
    serial.restart(continued=True)
    assert serial.save("nothing new") is None  # nothing printed since: no file
