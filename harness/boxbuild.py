"""Building a vagrant-libvirt box offline from Debian's packages.

Stages, each cached under ``~/.cache/harness/boxes/NAME/DIGEST/`` where DIGEST hashes the
recipe (so an unchanged recipe is a no-op, a changed one a rebuild):

0. when the recipe has a ``kernel:``, that kernel compiled on the host
   (:mod:`harness.kernelbuild`, cached under ``~/.cache/harness/kernels/``);
1. ``rootfs/``: mmdebstrap of the recipe's packages (and that kernel's image and headers
   packages), then configured for Vagrant (the ``vagrant`` user with Vagrant's insecure key,
   sudo, DHCP on eth0, serial console). It is kept: its headers and compiler are exactly the
   guest's.
2. ``box.img``: a bootable qcow2 (one partition, extlinux, kernel command line on ttyS0).
3. the box added to Vagrant under the entry's ``vagrant_box`` name, with a stamp file.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.boxes import Box, CatalogueError, DirectBoot
from harness.errors import HostError
from harness.hostexec import HostCommandError, Stopwatch, run, run_streaming
from harness.kernelbuild import BuiltKernel, KernelBuild
from harness.paths import box_cache_dir

BUILDER_VERSION = "8"  # 8: quicker boot (idle generators off, sshd before sysinit, net first)
ROOTFS_COMPLETE = ".harness-complete"  # written last into a finished root filesystem
# Quick logins for tests: no PAM session modules (harness.cleanstate sets them on a box that
# lacks them; the harness's own boxes have them from the start).
QUICK_LOGIN_FILE = "/etc/ssh/sshd_config.d/00-harness-quick-login.conf"
QUICK_LOGIN_CONFIG = "# harness: logins for tests, without PAM session modules\nUsePAM no\n"
BOOT_RECORD = ".harness-boot.json"  # in the root filesystem: its image's kernel, initrd, cmdline
# The serial console only: the kernel drawing its log on an emulated VGA text console too cost
# boot time under TCG, and the harness's VMs have no display.
KERNEL_CMDLINE = "root=LABEL=root rw console=ttyS0,115200 net.ifnames=0 biosdevname=0"
# Units a test VM never uses, masked in the boxes the harness builds: a getty on the graphical
# console nobody sees, the static gettys, filesystem scrubbing, the dpkg database's backup
# timer, pstore collection.
QUIET_UNITS = ("getty@tty1.service", "getty-static.service", "e2scrub_reap.service",
               "dpkg-db-backup.timer", "systemd-pstore.service", "modprobe@dm_mod.service",
               "modprobe@efi_pstore.service", "modprobe@fuse.service", "modprobe@loop.service",
               "modprobe@drm.service", "systemd-binfmt.service",
               "proc-sys-fs-binfmt_misc.automount", "systemd-network-generator.service",
               "systemd-rfkill.socket")
# systemd's generators a test VM does not need, switched off (a link to /dev/null in
# /etc/systemd/system-generators): each is a process at every boot, 1.3 s together under
# emulation. The fstab one stays (the root's mount options).
IDLE_GENERATORS = ("systemd-cryptsetup-generator", "systemd-debug-generator",
                   "systemd-getty-generator", "systemd-gpt-auto-generator",
                   "systemd-hibernate-resume-generator", "systemd-integritysetup-generator",
                   "systemd-rc-local-generator", "systemd-run-generator",
                   "systemd-system-update-generator", "systemd-sysv-generator",
                   "systemd-veritysetup-generator", "systemd-bless-boot-generator")
# Drivers udev would load at every boot that no test uses, each a module load (and for the
# crypto ones, self-tests) competing with the boot for two emulated CPUs: the emulated PC's
# floppy, speaker, IDE, SMBus and PS/2 mouse, a KVM that cannot run under emulation, the host
# CPU's power and crypto units (the generic crypto code serves instead), wireless. Loaded by
# name they still load; only automatic loading stops.
IDLE_MODULES = ("floppy", "pcspkr", "ata_piix", "ata_generic", "pata_acpi", "i2c_piix4",
                "psmouse", "serio_raw", "evdev", "kvm", "kvm_amd", "kvm_intel", "ccp",
                "intel_rapl_msr", "intel_rapl_common", "aesni_intel", "ghash_clmulni_intel",
                "crc32_pclmul", "crct10dif_pclmul", "sha1_ssse3", "sha256_ssse3", "sha512_ssse3",
                "polyval_clmulni", "cfg80211", "rfkill")
IDLE_MODULES_FILE = "etc/modprobe.d/harness-idle-hardware.conf"
# systemd-networkd takes the DHCP lease Vagrant waits for only once udev has processed the
# link, and udev's coldplug reaches it late among all the devices (20 s into user space under
# KASAN, long after sshd listens): the network devices are processed first, on their own.
NET_FIRST_UNIT = "harness-net-first.service"
NET_FIRST = """[Unit]
Description=harness: udev processes the network devices first, for systemd-networkd
DefaultDependencies=no
After=systemd-udevd.service
Before=systemd-udev-trigger.service

[Service]
Type=oneshot
ExecStart=/bin/udevadm trigger --subsystem-match=net --action=add

[Install]
WantedBy=sysinit.target
"""
# What the initramfs needs to mount the root disk (MODULES=list; built-in ones are skipped),
# and the NIC's driver, so that eth0 is there when systemd starts (NET_FIRST_UNIT).
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4", "virtio_net")
SECTOR = 512
PARTITION_START = 2048 * SECTOR
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "mkfs.ext4": "e2fsprogs",
    "extlinux": "extlinux",
    "qemu-img": "qemu-utils",
    "vagrant": "vagrant",
}


class BoxBuildError(HostError):
    """The box could not be built; the message says what to do."""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def parse_apt_sources(text: str, deb822: bool) -> list[AptSource]:
    """Read apt sources (one-line `deb ...` or deb822 stanzas), keeping only binary ones."""
    sources: list[AptSource] = []
    if deb822:
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
                continue
            for uri in fields.get("uris", "").split():
                sources.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                         tuple(fields.get("components", "main").split()),
                                         fields.get("signed-by")))
        return sources
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        signed_by = None
        if words and words[0].startswith("["):
            options: list[str] = []
            while words:
                options.append(words.pop(0))
                if options[-1].endswith("]"):
                    break
            for option in " ".join(options).strip("[]").split():
                if option.startswith("signed-by="):
                    signed_by = option.split("=", 1)[1]
        if len(words) >= 2:
            sources.append(AptSource(words[0], (words[1],), tuple(words[2:]) or ("main",),
                                     signed_by))
    return sources


def host_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    if (etc_apt / "sources.list").is_file():
        sources += parse_apt_sources((etc_apt / "sources.list").read_text(), deb822=False)
    for path in sorted((etc_apt / "sources.list.d").glob("*.list")):
        sources += parse_apt_sources(path.read_text(), deb822=False)
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        sources += parse_apt_sources(path.read_text(), deb822=True)
    return sources


# Suites without security updates or point-release updates of their own.
ROLLING_SUITES = ("sid", "unstable", "experimental")


def mirror_lines(suite: str, mirror: str | None, etc_apt: Path = Path("/etc/apt")) -> list[str]:
    """The `deb ...` lines mmdebstrap gets: --mirror when given, else the host's own sources.

    The host's apt sources name its own release (bookworm); another suite (bullseye, trixie,
    sid) is taken from the same archives: the Debian archive the host uses for its release,
    and its security archive for the suite's ``-security`` updates.
    """
    if mirror:
        return [f"deb {mirror} {suite} main"]
    sources = host_apt_sources(etc_apt)
    lines = [_deb_line(source, [s for s in source.suites if s == suite
                                 or s.startswith(suite + "-")]) for source in sources]
    lines = [line for line in lines if line]
    if not lines:
        lines = _same_archives_for(suite, sources)
    if not lines:
        raise BoxBuildError(
            f"the host's apt configuration has no Debian archive to take suite {suite!r} "
            "from; pass --mirror URL (a Debian archive that has it)"
        )
    return lines


def _deb_line(source: AptSource, suites: list[str]) -> str:
    if not suites:
        return ""
    options = f"[signed-by={source.signed_by}] " if source.signed_by else ""
    return f"deb {options}{source.uri} {' '.join(suites)} {' '.join(source.components)}"


def _same_archives_for(suite: str, sources: list[AptSource]) -> list[str]:
    """``suite`` from the archives the host's Debian sources point at: a source whose suites
    are a release and its ``-updates`` is the main archive, one with ``-security`` suites the
    security archive (used unless ``suite`` is rolling)."""
    releases = {s.split("-", 1)[0] for source in sources for s in source.suites}
    lines = []
    for source in sources:
        kinds = {s.partition("-")[2] for s in source.suites if s.split("-", 1)[0] in releases}
        if not source.uri.rstrip("/").split("/")[-1].startswith("debian"):
            continue  # a third party's archive (its suites are not Debian's)
        if kinds & {"", "updates"} and "security" not in kinds:
            lines.append(_deb_line(source, [suite]))
        elif kinds == {"security"} and suite not in ROLLING_SUITES:
            lines.append(_deb_line(source, [f"{suite}-security"]))
    return lines


# What apt says when a recipe asks for something its suite does not have, and what to tell.
MMDEBSTRAP_FAILURES = (
    (re.compile(r"Unable to locate package (\S+)"),
     "package {0} is not in suite {suite} (at the archive used): take it out of the recipe's "
     "packages or name the one {suite} has"),
    (re.compile(r"Package '?([^' ]+)'? has no installation candidate"),
     "package {0} has no installable version in suite {suite}: take it out of the recipe or "
     "name its replacement"),
    (re.compile(r"repository '([^']+)' does not have a Release file"),
     "the archive has no suite {suite} ({0}): fix the recipe's suite, or pass --mirror URL "
     "of an archive that has it"),
    (re.compile(r"Release file for (\S+) is expired"),
     "{0} is expired (a mirror that has not synced lately): add "
     "apt_options: ['Acquire::Check-Valid-Until \"false\"'] to the recipe, or use another mirror"),
)


def mmdebstrap_failure(box: str, suite: str, err: HostCommandError) -> str:
    """The reason a box's root filesystem could not be made, in the recipe's terms."""
    for pattern, text in MMDEBSTRAP_FAILURES:
        found = pattern.search(err.output)
        if found:
            return f"box {box} cannot be built here: " + text.format(*found.groups(),
                                                                      suite=suite)
    return f"box {box} cannot be built here: {err}"


def vagrant_public_key() -> str:
    candidates = sorted(
        glob.glob("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"))
    candidates += sorted(glob.glob("/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub"))
    if not candidates:
        raise BoxBuildError("Vagrant's insecure public key was not found: install vagrant first")
    return Path(candidates[-1]).read_text()


@dataclass
class BoxBuild:
    box: Box
    mirror: str | None = None
    stopwatch: Stopwatch | None = None

    def __post_init__(self) -> None:
        if not self.box.is_local or self.box.recipe is None:
            raise CatalogueError(
                f"box {self.box.name!r} comes from Vagrant Cloud; only local boxes are built "
                "(Vagrant downloads cloud boxes on first use)"
            )
        self.recipe = self.box.recipe
        self.digest = self.recipe.digest(BUILDER_VERSION)
        self.dir = box_cache_dir(self.box.name, self.digest)
        self.rootfs = self.dir / "rootfs"
        self.image = self.dir / "box.img"
        self.stamp = self.dir / "added.json"
        self.clock = self.stopwatch or Stopwatch()

    # -- queries -------------------------------------------------------------------------------
    def is_added(self) -> bool:
        if not self.stamp.is_file():
            return False
        listing = run(["vagrant", "box", "list", "--machine-readable"], check=False).stdout
        names = {
            line.split(",")[3] for line in listing.splitlines() if ",box-name," in line
        }
        return self.box.vagrant_box in names

    # -- the build ------------------------------------------------------------------------------
    def build(self, force: bool = False, rootfs_only: bool = False) -> bool:
        """Build and add the box (``rootfs_only``: only its root filesystem, all that
        ``harness build`` needs). Returns False when it was already up to date."""
        if rootfs_only and not force and (self.rootfs / ROOTFS_COMPLETE).is_file():
            self.clock.step(f"root filesystem of {self.box.name} is up to date "
                            f"({self.rootfs}); nothing to do")
            return False
        if not force and self.is_added():
            self.clock.step(
                f"box {self.box.vagrant_box} is up to date (recipe {self.digest}); nothing to do"
            )
            return False
        self._preflight()
        kernel = None
        if self.recipe.kernel is not None:
            kernel = KernelBuild(self.recipe.kernel, stopwatch=self.clock).build()
        self.dir.mkdir(parents=True, exist_ok=True)
        if force or not (self.rootfs / ROOTFS_COMPLETE).is_file():
            self._make_rootfs(kernel)
        else:
            self.clock.step(f"root filesystem cached in {self.rootfs}")
        if rootfs_only:
            self.clock.step(f"root filesystem of {self.box.name} ready, kernel "
                            f"{rootfs_kernel_release(self.rootfs)} (recipe {self.digest})")
            return True
        self._make_image(kernel.release if kernel else None)
        self._add_to_vagrant()
        self._remove_older_builds()
        self.clock.step(f"box {self.box.vagrant_box} ready, kernel "
                        f"{rootfs_kernel_release(self.rootfs)} (recipe {self.digest})")
        return True

    def _remove_older_builds(self) -> None:
        """Earlier recipes' root filesystems of this box (a GB each): the box now in Vagrant
        is this one, and a host build must match it."""
        for other in self.dir.parent.iterdir():
            if other != self.dir and other.is_dir():
                self.clock.step(f"removing the older build {other}")
                shutil.rmtree(other, ignore_errors=True)

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise BoxBuildError(
                "building a box needs root (mmdebstrap, loop devices, mount): "
                "run `sudo harness box build` or as root"
            )
        missing = [f"{tool} (package {pkg})" for tool, pkg in HOST_TOOLS.items()
                   if shutil.which(tool) is None]
        if not MBR_BIN.is_file():
            missing.append(f"{MBR_BIN} (package syslinux-common)")
        if missing:
            raise BoxBuildError(
                "missing host tools: " + ", ".join(missing)
                + "; install them with apt-get install (or run the README's setup command)"
            )

    def _make_rootfs(self, kernel: BuiltKernel | None) -> None:
        if self.rootfs.exists():
            shutil.rmtree(self.rootfs)
        lines = mirror_lines(self.recipe.suite, self.mirror)
        hooks: list[str] = []
        if kernel is not None:
            # Installed by dpkg inside the new root, so its initramfs hook makes the initrd.
            names = " ".join(p.name for p in kernel.packages)
            hooks = [
                "--customize-hook=copy-in " + " ".join(str(p) for p in kernel.packages) + " /tmp",
                f'--customize-hook=chroot "$1" sh -c "cd /tmp && dpkg -i {names} && rm {names}"',
            ]
        self.clock.step(
            f"mmdebstrap {self.recipe.suite} with {len(self.recipe.packages)} packages "
            "from the host's apt sources" if not self.mirror else f"from {self.mirror}"
            " (a few minutes)"
        )
        try:
            self._mmdebstrap(hooks, lines)
        except HostCommandError as err:
            raise BoxBuildError(mmdebstrap_failure(self.box.name, self.recipe.suite, err)) \
                from err
        self.clock.step("configuring the guest for Vagrant")
        self._configure_rootfs()
        (self.rootfs / ROOTFS_COMPLETE).write_text(self.digest + "\n")

    def _mmdebstrap(self, hooks: list[str], lines: list[str]) -> None:
        run_streaming(
            ["mmdebstrap", "--variant=minbase",
             "--include=" + ",".join(self.recipe.packages), *hooks,
             *(f"--aptopt={option}" for option in self.recipe.apt_options),
             self.recipe.suite, str(self.rootfs), *lines],
        )

    def _configure_rootfs(self) -> None:
        root = self.rootfs
        hostname = self.recipe.hostname

        def write(rel: str, text: str, mode: int = 0o644) -> None:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)

        def chroot(*argv: str) -> None:
            run(["chroot", str(root), *argv])

        write("etc/hostname", hostname + "\n")
        write("etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
        write("etc/fstab", "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n")
        if any((root / d / "ifup").exists() for d in ("sbin", "usr/sbin")):
            # A recipe of its own with ifupdown: it keeps managing eth0, as it always did.
            write("etc/network/interfaces",
                  "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n")
        else:
            # systemd-networkd (part of systemd): the lease vagrant-libvirt waits for about 1 s
            # after it starts, where ifupdown spent 9 s (udevadm settle, then dhclient).
            write("etc/systemd/network/10-eth0.network",
                  "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
                  "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
            write(f"etc/systemd/system/{NET_FIRST_UNIT}", NET_FIRST)
            chroot("systemctl", "enable", NET_FIRST_UNIT)
            chroot("systemctl", "enable", "systemd-networkd.service")
        self._quick_boot(write, chroot)
        # Root logs in with the Vagrant key too: the harness runs its root commands over a root
        # login, as `sudo` costs about 0.4 s a call under emulation.
        write("etc/ssh/sshd_config.d/harness.conf",
              "UseDNS no\nPermitRootLogin prohibit-password\n")
        # Quick logins for tests (harness.cleanstate.quicken_logins would otherwise set them
        # and restart sshd at every first boot): no PAM session modules, no re-exec per login.
        write(QUICK_LOGIN_FILE.lstrip("/"), QUICK_LOGIN_CONFIG)
        write("etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440)
        chroot("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "vagrant")
        run(["chroot", str(root), "chpasswd"], input_text="vagrant:vagrant\n")
        ssh_dir = root / "home/vagrant/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(vagrant_public_key())
        (ssh_dir / "authorized_keys").chmod(0o600)
        chroot("chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")
        root_ssh = root / "root/.ssh"
        root_ssh.mkdir(mode=0o700, exist_ok=True)
        (root_ssh / "authorized_keys").write_text(vagrant_public_key())
        (root_ssh / "authorized_keys").chmod(0o600)
        # Fresh host keys for this image (mmdebstrap's are made on the build host's clock).
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        chroot("ssh-keygen", "-A")
        takes_r = run(["chroot", str(root), "sh", "-c", "mkdir -p /run/sshd && sshd -t -r; "
                       "status=$?; rm -rf /run/sshd; exit $status"], check=False)
        if takes_r.returncode == 0:
            write("etc/default/ssh", "SSHD_OPTS=-r\n")  # an sshd that still takes -r
        # Nothing periodic should compete with the tests for two emulated CPUs.
        for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                     "fstrim.timer"):
            run(["chroot", str(root), "systemctl", "disable", unit], check=False)
        write("etc/machine-id", "")

    def _quick_boot(self, write, chroot) -> None:
        """What a test VM's boot does not need (bench/boot.py measured each): units that only
        cost its two emulated CPUs at boot, and an initramfs with every module of the kernel
        (36 MB on 6.1) where the root disk needs three."""
        for unit in QUIET_UNITS:
            run(["chroot", str(self.rootfs), "systemctl", "mask", unit], check=False)
        generators = self.rootfs / "etc/systemd/system-generators"
        generators.mkdir(parents=True, exist_ok=True)
        for name in IDLE_GENERATORS:
            (generators / name).unlink(missing_ok=True)
            (generators / name).symlink_to("/dev/null")
        write(IDLE_MODULES_FILE, "".join(f"blacklist {name}\n" for name in IDLE_MODULES))
        write("etc/initramfs-tools/conf.d/harness", "MODULES=list\n")
        write("etc/initramfs-tools/modules", "\n".join(INITRAMFS_MODULES) + "\n")
        chroot("update-initramfs", "-u", "-k", "all")
        # sshd needs no network to listen on 0.0.0.0 (a lease from the initramfs, with klibc's
        # ipconfig, was tried: the root mount came 13 s later). See quick_ssh_unit.
        unit = self.rootfs / "lib/systemd/system/ssh.service"
        if unit.is_file():
            write("etc/systemd/system/ssh.service", quick_ssh_unit(unit.read_text()))

    def _kernel_files(self, release: str | None = None) -> tuple[str, str]:
        kernels = sorted((self.rootfs / "boot").glob(f"vmlinuz-{release or '*'}"))
        if not kernels:
            raise BoxBuildError(f"no kernel in {self.rootfs}/boot: is a linux-image in the recipe?")
        version = kernels[-1].name.removeprefix("vmlinuz-")
        initrd = self.rootfs / "boot" / f"initrd.img-{version}"
        if not initrd.is_file():
            raise BoxBuildError(f"no initrd for {version} in the image (initramfs-tools missing?)")
        return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}"

    def _cmdline(self) -> str:
        extra = self.recipe.kernel.cmdline if self.recipe.kernel else ""
        return f"{KERNEL_CMDLINE} {extra}".strip()

    def _make_image(self, release: str | None) -> None:
        kernel, initrd = self._kernel_files(release)
        # What the bootloader boots, for a direct kernel boot of the same files (box_direct_boot)
        (self.rootfs / BOOT_RECORD).write_text(json.dumps(
            {"kernel": kernel, "initrd": initrd, "cmdline": self._cmdline()}))
        size = self.recipe.disk_size_gb * 1024**3
        with tempfile.TemporaryDirectory(dir=self.dir, prefix="image.") as tmp:
            raw = Path(tmp) / "disk.raw"
            mnt = Path(tmp) / "mnt"
            mnt.mkdir()
            self.clock.step(f"making a {self.recipe.disk_size_gb} GB bootable disk ({kernel})")
            with open(raw, "wb") as disk:
                disk.truncate(size)
            run(["sfdisk", "--quiet", str(raw)], input_text="label: dos\n2048,,L,*\n")
            loop = run(["losetup", "--find", "--show", "--offset", str(PARTITION_START),
                        "--sizelimit", str(size - PARTITION_START), str(raw)]).stdout.strip()
            try:
                run(["mkfs.ext4", "-q", "-L", "root", loop])
                run(["mount", loop, str(mnt)])
                try:
                    self.clock.step("copying the root filesystem into the disk")
                    run(["cp", "-a", f"{self.rootfs}/.", str(mnt)])
                    (mnt / ROOTFS_COMPLETE).unlink(missing_ok=True)
                    (mnt / BOOT_RECORD).unlink(missing_ok=True)
                    extlinux_dir = mnt / "boot" / "extlinux"
                    extlinux_dir.mkdir(parents=True, exist_ok=True)
                    (extlinux_dir / "extlinux.conf").write_text(
                        "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 1\n"
                        f"LABEL linux\n  KERNEL {kernel}\n  INITRD {initrd}\n"
                        f"  APPEND {self._cmdline()}\n"
                    )
                    run(["extlinux", "--install", str(extlinux_dir)])
                finally:
                    run(["umount", str(mnt)])
            finally:
                run(["losetup", "--detach", loop])
            with open(raw, "r+b") as disk:
                disk.write(MBR_BIN.read_bytes()[:440])
            self.clock.step("converting to qcow2")
            run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(self.image)])

    def _add_to_vagrant(self) -> None:
        box_file = self.dir / "harness.box"
        self.clock.step(f"packing {box_file.name}")
        with tempfile.TemporaryDirectory(dir=self.dir, prefix="pack.") as tmp:
            meta = Path(tmp) / "metadata.json"
            meta.write_text(json.dumps({"provider": "libvirt", "format": "qcow2",
                                        "virtual_size": self.recipe.disk_size_gb}))
            vagrantfile = Path(tmp) / "Vagrantfile"
            vagrantfile.write_text(
                'Vagrant.configure("2") do |config|\n'
                f'  config.ssh.username = "{self.box.user}"\n'
                "end\n"
            )
            # Uncompressed: qcow2 is already sparse and gzip would cost minutes.
            with tarfile.open(box_file, "w") as tar:
                tar.add(meta, "metadata.json")
                tar.add(vagrantfile, "Vagrantfile")
                tar.add(self.image, "box.img")
        self.clock.step(f"vagrant box add {self.box.vagrant_box}")
        remove_pool_volumes(self.box.vagrant_box)
        run(["vagrant", "box", "add", "--force", "--name", self.box.vagrant_box, str(box_file)])
        box_file.unlink()
        self.image.unlink()
        self._upload_boot_files()
        self.stamp.write_text(json.dumps({"vagrant_box": self.box.vagrant_box,
                                          "digest": self.digest,
                                          "kernel": rootfs_kernel_release(self.rootfs)}))

    def _upload_boot_files(self) -> None:
        """The kernel and initrd as volumes of libvirt's pool, beside the box's disk, for a
        direct kernel boot: QEMU runs as libvirt's user and cannot read them in the build
        cache (under the user's home). Without a pool the box still boots its bootloader."""
        record = json.loads((self.rootfs / BOOT_RECORD).read_text())
        record.pop("kernel_volume", None)  # an earlier upload's
        record.pop("initrd_volume", None)
        prefix = boot_volume_prefix(self.box)
        remove_volumes(prefix)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix="boot.") as tmp:
            kernel = self.rootfs / record["kernel"].lstrip("/")
            unpacked = pvh_kernel(kernel, self.rootfs)
            if unpacked is not None:
                kernel = Path(tmp) / "vmlinux"
                kernel.write_bytes(unpacked)
            sources = {"kernel": kernel, "initrd": self.rootfs / record["initrd"].lstrip("/")}
            if mounts_root_itself(self.rootfs, record["kernel"]):
                # No initramfs at all: the kernel finds its disk by name (a label needs the
                # initramfs's udev; under KASAN that initramfs took 16 s to the root mount).
                del sources["initrd"]
                record["cmdline"] = record["cmdline"].replace("root=LABEL=root", "root=/dev/vda1")
            self._upload_volumes(record, prefix, sources)

    def _upload_volumes(self, record: dict, prefix: str, sources: dict[str, Path]) -> None:
        try:
            for kind, source in sources.items():
                name = f"{prefix}{self.digest}-{kind}"
                virsh = ["virsh", "-c", "qemu:///system"]
                run([*virsh, "vol-create-as", POOL, name, str(source.stat().st_size),
                     "--format", "raw"])
                run([*virsh, "vol-upload", "--pool", POOL, name, str(source)])
                record[f"{kind}_volume"] = run([*virsh, "vol-path", "--pool", POOL,
                                                name]).stdout.strip()
        except HostCommandError as err:
            self.clock.step(f"no direct kernel boot for this box (libvirt's pool: {err}); "
                            "it boots its bootloader")
            return
        (self.rootfs / BOOT_RECORD).write_text(json.dumps(record))
        self.clock.step(f"{' and '.join(sources)} in libvirt's pool (direct kernel boot)")


POOL = "default"
# The compressed kernel inside a bzImage, by its magic (zstd with the host's zstd, when there).
KERNEL_PAYLOADS = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                   (b"\x1f\x8b\x08", "gzip"))


def quick_ssh_unit(text: str) -> str:
    """The distribution's ssh.service, started as soon as the root file system is writable and
    the users and /run are there, not after sysinit.target and network.target (2-4 s later
    under emulation), and without its ``sshd -t`` config check (a second sshd start, 1 s)."""
    text = re.sub(r"^ExecStartPre=.*sshd -t.*\n", "", text, flags=re.M)
    text = re.sub(r"^(After=.*?)\bnetwork\.target\b ?", r"\1", text, flags=re.M)
    early = ("DefaultDependencies=no\n"
             "After=systemd-remount-fs.service systemd-sysusers.service "
             "systemd-tmpfiles-setup.service systemd-journald.socket\n"
             "Conflicts=shutdown.target\nBefore=shutdown.target\n")
    return re.sub(r"^\[Unit\]\n", "[Unit]\n" + early, text, count=1, flags=re.M)


# What a kernel needs built in to mount the box's root disk without an initramfs.
ROOT_DISK_BUILT_IN = ("CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_EXT4_FS=y")


def mounts_root_itself(rootfs: Path, kernel: str) -> bool:
    """Whether the kernel at ``kernel`` (a path in ``rootfs``) has the root disk's drivers
    built in (the harness's own debug kernel does; Debian's have them as modules)."""
    config = kernel_config(rootfs, kernel)
    return all(option in config for option in ROOT_DISK_BUILT_IN)


def kernel_config(rootfs: Path, kernel: str | Path) -> set[str]:
    """The lines of the config the kernel ``kernel`` (``vmlinuz-RELEASE`` in ``rootfs``) was
    built with; empty when its config is not there."""
    release = Path(kernel).name.removeprefix("vmlinuz-")
    config = rootfs / "boot" / f"config-{release}"
    return set(config.read_text(errors="replace").splitlines()) if config.is_file() else set()


def pvh_kernel(bzimage: Path, rootfs: Path) -> bytes | None:
    """The kernel of ``bzimage`` unpacked (an ELF vmlinux), when it has the PVH entry point
    (CONFIG_PVH, as Debian's kernels do): QEMU then boots it directly, skipping the
    decompressor, which took 3.3 s of every boot under emulation (bench/boot.py). None when
    it cannot be had (another compression, no PVH, zstd not installed): the bzImage boots as
    it is."""
    import lzma
    import zlib

    if "CONFIG_PVH=y" not in kernel_config(rootfs, bzimage):
        return None
    data = bzimage.read_bytes()
    for magic, kind in KERNEL_PAYLOADS:
        at = data.find(magic)
        if at < 0:
            continue
        try:
            if kind == "xz":
                unpacked = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
            elif kind == "zstd" and shutil.which("zstd"):
                # what follows the frame makes zstd complain; its output is the kernel
                unpacked = subprocess.run(["zstd", "-dcq"], input=data[at:],
                                          capture_output=True, check=False).stdout
            else:  # a gzip stream, whatever follows it ignored
                unpacked = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[at:])
        except (lzma.LZMAError, zlib.error, OSError):
            continue
        if unpacked[:4] == b"\x7fELF":
            return unpacked
    return None


def boot_volume_prefix(box: Box) -> str:
    return "harness-boot-" + box.name.replace("/", "_") + "-"


def remove_volumes(prefix: str, pool: str = POOL) -> list[str]:
    """Delete the volumes of libvirt's pool whose names start with ``prefix``."""
    listed = run(["virsh", "-c", "qemu:///system", "vol-list", pool], check=False)
    return _delete_listed(listed.stdout, prefix, pool) if listed.returncode == 0 else []


def _delete_listed(listing: str, prefix: str, pool: str) -> list[str]:
    """Delete the volumes of a ``virsh vol-list`` listing whose names start with ``prefix``."""
    removed = []
    for line in listing.splitlines()[2:]:
        words = line.split()
        if words and words[0].startswith(prefix):
            run(["virsh", "-c", "qemu:///system", "vol-delete", "--pool", pool, words[0]],
                check=False)
            removed.append(words[0])
    return removed


def remove_pool_volumes(vagrant_box: str, pool: str = "default") -> list[str]:
    """Delete the copies vagrant-libvirt uploaded of an older box of this name.

    vagrant-libvirt reuses a pool volume named after the box, so a rebuilt box would otherwise
    boot the old image.
    """
    prefix = vagrant_box.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    try:
        listed = run(["virsh", "-c", "qemu:///system", "vol-list", pool], check=False)
    except HostCommandError:
        return []
    if listed.returncode != 0:
        # The new box still boots (its volume gets a new name); the old copy only takes disk.
        print(f"harness box build: libvirt's pool {pool!r} could not be listed, so an older "
              f"copy of {vagrant_box} may stay on disk ({listed.stdout.strip()}); start "
              "libvirtd (harness doctor --fix) and rebuild with --force to remove it",
              file=sys.stderr)
        return []
    return _delete_listed(listed.stdout, prefix, pool)


def box_kernel(box: Box) -> BuiltKernel | None:
    """The kernel the harness compiled for ``box`` (None for a distribution kernel, or before
    it is built): its vmlinux and System.map symbolize core-kernel frames."""
    if box.recipe is None or box.recipe.kernel is None:
        return None
    return KernelBuild(box.recipe.kernel).cached()


def box_rootfs(box: Box) -> Path | None:
    """Where ``box build`` keeps the root filesystem it made ``box`` from (complete when it has
    ROOTFS_COMPLETE); None for a cloud box, which has none."""
    if not box.is_local or box.recipe is None:
        return None
    return BoxBuild(box).rootfs


def rootfs_kernel_release(rootfs: Path) -> str | None:
    """The release of the kernel whose headers a root filesystem has (``uname -r`` of the
    guest booted from it): a rolling suite's box records here which kernel it got."""
    # build is an absolute link (to /usr/src/linux-headers-...): it resolves inside the root
    releases = sorted(p.name for p in (rootfs / "lib/modules").glob("*")
                      if (p / "build").is_symlink() or (p / "build").is_dir())
    return releases[-1] if releases else None


def built_rootfs(box: Box) -> Path | None:
    """``box``'s root filesystem when a build finished it on this machine, else None."""
    rootfs = box_rootfs(box)
    return rootfs if rootfs is not None and (rootfs / ROOTFS_COMPLETE).is_file() else None


def box_kernel_release(box: Box) -> str | None:
    """The kernel release of ``box``'s last build on this machine (None: not built here)."""
    rootfs = built_rootfs(box)
    return rootfs_kernel_release(rootfs) if rootfs is not None else None


def box_direct_boot(box: Box) -> DirectBoot | None:
    """How libvirt boots ``box``'s kernel without its bootloader: the kernel and initrd of its
    image (copies in libvirt's pool) and the command line its bootloader would give. None when
    the box was not built here, or its copies are not in the pool."""
    rootfs = built_rootfs(box)
    recorded = rootfs / BOOT_RECORD if rootfs is not None else None
    if recorded is None or not recorded.is_file():
        return None
    record = json.loads(recorded.read_text())
    if "kernel_volume" not in record:
        return None
    kernel = Path(record["kernel_volume"])
    initrd = Path(record["initrd_volume"]) if "initrd_volume" in record else None
    if not kernel.is_file() or (initrd is not None and not initrd.is_file()):
        return None
    return DirectBoot(kernel, initrd, record["cmdline"])
