"""Box building without building: apt sources, mirror lines, the cache of older recipes."""

import io
from pathlib import Path

import pytest

from harness.boxbuild import mirror_lines, parse_apt_sources
from harness.hostexec import Stopwatch

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main contrib
"""


def test_deb822_sources_are_read_binary_only():
    sources = parse_apt_sources(DEB822, deb822=True)
    assert [s.uri for s in sources] == ["http://mirror.example/debian",
                                        "http://security.example/debian-security"]
    assert sources[0].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_one_line_sources_with_options():
    text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    (source,) = parse_apt_sources(text, deb822=False)
    assert source.uri == "http://m.example/debian" and source.signed_by == "/k.gpg"


def test_mirror_lines_come_from_the_hosts_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    lines = mirror_lines("bookworm", None, etc_apt=tmp_path)
    assert lines[0].endswith("http://mirror.example/debian bookworm bookworm-updates main")
    assert lines[1] == "deb http://security.example/debian-security bookworm-security main contrib"
    assert mirror_lines("bookworm", "http://given.example/d", etc_apt=tmp_path) == [
        "deb http://given.example/d bookworm main"]


def test_a_new_build_removes_the_older_recipes_of_the_same_box_only(tmp_path, monkeypatch):
    from harness.boxbuild import BoxBuild
    from harness.boxes import load_catalogue

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    catalogue = load_catalogue(Path(__file__).resolve().parents[2] / "boxes.yaml")
    build = BoxBuild(catalogue.get("debian-12"), stopwatch=Stopwatch(io.StringIO()))
    older = build.dir.parent / "0123456789abcdef" / "rootfs"
    other_box = tmp_path / "harness" / "boxes" / "debian-12-debug" / "fedcba9876543210"
    for folder in (build.dir / "rootfs", older, other_box):
        folder.mkdir(parents=True)
    build._remove_older_builds()
    assert (build.dir / "rootfs").is_dir() and other_box.is_dir()
    assert not older.parent.exists()


def test_old_box_copies_in_libvirts_pool_are_removed_and_a_pool_that_cannot_be_listed_is_said(
        monkeypatch, capsys):
    import subprocess

    from harness import boxbuild

    calls: list[list[str]] = []
    listing = (" Name   Path\n----------\n"
               " harness-VAGRANTSLASH-debian-12_vagrant_box_image_0_17_box.img  /x\n"
               " harness-VAGRANTSLASH-debian-12-debug_vagrant_box_image_0_18_box.img  /y\n"
               " harness-1234-default.img  /z\n")

    def fake_run(argv, check=True, **kwargs):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, listing, "")

    monkeypatch.setattr(boxbuild, "run", fake_run)
    assert boxbuild.remove_pool_volumes("harness/debian-12") == [
        "harness-VAGRANTSLASH-debian-12_vagrant_box_image_0_17_box.img"]
    assert calls[-1][-1] == "harness-VAGRANTSLASH-debian-12_vagrant_box_image_0_17_box.img"

    def down(argv, check=True, **kwargs):
        return subprocess.CompletedProcess(argv, 1, "error: failed to connect to the hypervisor",
                                           "")

    monkeypatch.setattr(boxbuild, "run", down)
    assert boxbuild.remove_pool_volumes("harness/debian-12") == []
    said = capsys.readouterr().err
    assert "could not be listed" in said and "harness doctor --fix" in said


def test_another_suite_comes_from_the_hosts_debian_archives_and_third_parties_are_left_out(
        tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text("deb https://apt.vendor.example/apt stable main\n")
    keyring = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    assert mirror_lines("bullseye", None, etc_apt=tmp_path) == [
        f"deb {keyring}http://mirror.example/debian bullseye main",
        "deb http://security.example/debian-security bullseye-security main contrib"]
    # sid has no security suite
    assert mirror_lines("sid", None, etc_apt=tmp_path) == [
        f"deb {keyring}http://mirror.example/debian sid main"]


def test_a_host_without_a_debian_archive_says_to_pass_a_mirror(tmp_path):

    from harness.boxbuild import BoxBuildError

    (tmp_path / "sources.list").write_text("deb https://apt.vendor.example/apt stable main\n")
    with pytest.raises(BoxBuildError, match="--mirror"):
        mirror_lines("trixie", None, etc_apt=tmp_path)


def _bzimage(tmp_path: Path, payload: bytes, compress: str, pvh: bool = True) -> Path:
    import gzip
    import lzma

    packed = lzma.compress(payload, format=lzma.FORMAT_XZ) if compress == "xz" \
        else gzip.compress(payload)
    (tmp_path / "boot").mkdir(exist_ok=True)
    (tmp_path / "boot" / "config-6.1.0-1-amd64").write_text(
        "CONFIG_PVH=y\n" if pvh else "# CONFIG_PVH is not set\n")
    image = tmp_path / "boot" / "vmlinuz-6.1.0-1-amd64"
    image.write_bytes(b"MZ setup code" * 100 + packed + b"\x00trailer" * 50)
    return image


def test_a_pvh_kernel_is_unpacked_for_a_boot_without_its_decompressor(tmp_path):
    from harness.boxbuild import pvh_kernel

    elf = b"\x7fELF" + bytes(range(256)) * 64
    for compress in ("xz", "gzip"):
        assert pvh_kernel(_bzimage(tmp_path, elf, compress), tmp_path) == elf
    # without PVH the bzImage boots as it is; so does one whose payload is not an ELF
    assert pvh_kernel(_bzimage(tmp_path, elf, "xz", pvh=False), tmp_path) is None
    assert pvh_kernel(_bzimage(tmp_path, b"not an elf" * 99, "xz"), tmp_path) is None


def test_a_kernel_with_its_root_disk_drivers_built_in_boots_without_an_initramfs(tmp_path):
    from harness.boxbuild import mounts_root_itself

    (tmp_path / "boot").mkdir()
    config = tmp_path / "boot" / "config-6.1.192-harness-debug"
    config.write_text("CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_EXT4_FS=y\n")
    assert mounts_root_itself(tmp_path, "/boot/vmlinuz-6.1.192-harness-debug")
    config.write_text("CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=m\nCONFIG_EXT4_FS=m\n")  # Debian's
    assert not mounts_root_itself(tmp_path, "/boot/vmlinuz-6.1.192-harness-debug")
    assert not mounts_root_itself(tmp_path, "/boot/vmlinuz-other")


@pytest.mark.parametrize(("output", "says"), [
    ("E: Unable to locate package isc-dhcp-client\nE: setup failed",
     "package isc-dhcp-client is not in suite sid"),
    ("E: Package 'gdb' has no installation candidate", "package gdb has no installable version"),
    ("E: The repository 'http://m.example/debian sid Release' does not have a Release file.",
     "the archive has no suite sid (http://m.example/debian sid Release)"),
    ("E: Release file for http://m.example/debian/dists/sid/InRelease is expired (invalid "
     "since 29d)", "Check-Valid-Until"),
    ("E: something else entirely", "exited 25"),
])
def test_a_box_that_cannot_be_built_says_what_its_recipe_lacks(output, says):
    from harness.boxbuild import mmdebstrap_failure
    from harness.hostexec import HostCommandError

    text = mmdebstrap_failure("debian-sid", "sid", HostCommandError(["mmdebstrap"], 25, output))
    assert text.startswith("box debian-sid cannot be built here: ") and says in text


DEBIAN_SSH_UNIT = """[Unit]
Description=OpenBSD Secure Shell server
Documentation=man:sshd(8) man:sshd_config(5)
After=network.target auditd.service
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run

[Service]
EnvironmentFile=-/etc/default/ssh
ExecStartPre=/usr/sbin/sshd -t
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
ExecReload=/usr/sbin/sshd -t
ExecReload=/bin/kill -HUP $MAINPID
Type=notify

[Install]
WantedBy=multi-user.target
"""


def test_sshd_starts_before_sysinit_without_its_config_check():
    from harness.boxbuild import quick_ssh_unit

    unit = quick_ssh_unit(DEBIAN_SSH_UNIT)
    assert "ExecStartPre" not in unit
    assert "ExecReload=/usr/sbin/sshd -t" in unit  # a reload still checks first
    assert "network.target" not in unit
    lines = unit.splitlines()
    assert lines[:2] == ["[Unit]", "DefaultDependencies=no"]
    after = [line for line in lines if line.startswith("After=")]
    assert "systemd-remount-fs.service" in after[0] and "auditd.service" in after[1]
    assert "Conflicts=shutdown.target" in lines  # still stopped at shutdown


def test_udev_processes_the_network_first_for_networkd():
    from harness.boxbuild import INITRAMFS_MODULES, NET_FIRST

    unit = NET_FIRST.splitlines()
    assert "DefaultDependencies=no" in unit  # not after sysinit.target
    assert "After=systemd-udevd.service" in unit
    assert "Before=systemd-udev-trigger.service" in unit  # before every other device
    assert "ExecStart=/bin/udevadm trigger --subsystem-match=net --action=add" in unit
    assert "virtio_net" in INITRAMFS_MODULES  # eth0 exists when systemd starts
