"""Host checks: everything a run needs, each with how to fix it (and ``--fix`` where it can).

The checks are a table of small functions. Each returns a :class:`Check` with a status
(ok, warn, fail), what it saw, and the command that fixes a failure. The pytest plugin shows the
same report when no VM can be had, so users see one explanation everywhere.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import accel
from harness.boxbuild import box_rootfs
from harness.boxes import Box
from harness.errors import HarnessError
from harness.guestnet import (
    MANAGEMENT_NETWORK,
    ensure_management_network,
    existing_management_network,
)
from harness.hostbuild import NO_ROOTFS, RootfsBuilder
from harness.hostexec import HostCommandError, run
from harness.libvirt import LIBVIRT_URI, virsh
from harness.untrusted import sandbox_available

APT_INSTALL = "apt-get install -y --no-install-recommends"
POOL_PATH = "/var/lib/libvirt/images"


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        mark = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]"}[self.status]
        text = f"{mark} {self.name}: {self.detail}"
        if self.fix and self.status != "ok":
            text += f"\n       fix: {self.fix}"
        return text


def _virsh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run(["virsh", "-c", LIBVIRT_URI, *args], check=False, timeout=timeout)


def _has_service_manager() -> bool:
    return Path("/run/systemd/system").is_dir()


def check_vagrant(fix: bool) -> Check:
    if shutil.which("vagrant") is None:
        return Check("vagrant", "fail", "not installed", f"{APT_INSTALL} vagrant")
    version = run(["vagrant", "--version"], check=False).stdout.strip()
    return Check("vagrant", "ok", version)


def check_vagrant_libvirt(fix: bool) -> Check:
    if shutil.which("vagrant") is None:
        return Check("vagrant-libvirt", "fail", "vagrant missing", f"{APT_INSTALL} vagrant-libvirt")
    plugins = run(["vagrant", "plugin", "list"], check=False).stdout
    line = next((p for p in plugins.splitlines() if p.startswith("vagrant-libvirt")), None)
    if line is None:
        return Check("vagrant-libvirt", "fail", "plugin not installed",
                     f"{APT_INSTALL} vagrant-libvirt")
    return Check("vagrant-libvirt", "ok", line.strip())


def check_qemu(fix: bool) -> Check:
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            return Check("qemu", "fail", f"{tool} not found", f"{APT_INSTALL} {package}")
    version = run(["qemu-system-x86_64", "--version"], check=False).stdout.splitlines()[0]
    return Check("qemu", "ok", version)


def start_libvirt_daemons() -> str:
    """Start virtlogd and libvirtd: through systemd when it runs, else as daemons."""
    if _has_service_manager():
        run(["systemctl", "start", "virtlogd", "libvirtd"], check=False)
        return "systemctl start virtlogd libvirtd"
    if run(["pgrep", "-x", "virtlogd"], check=False).returncode != 0:
        run(["virtlogd", "-d"], check=False)
    if run(["pgrep", "-x", "libvirtd"], check=False).returncode != 0:
        run(["libvirtd", "-d"], check=False)
    for _ in range(50):
        if _virsh("version", timeout=10).returncode == 0:
            break
        time.sleep(0.2)
    return "virtlogd -d; libvirtd -d"


def check_libvirtd(fix: bool) -> Check:
    if shutil.which("virsh") is None or shutil.which("libvirtd") is None:
        return Check("libvirtd", "fail", "libvirt is not installed",
                     f"{APT_INSTALL} libvirt-daemon-system libvirt-clients dnsmasq-base "
                     "iptables ebtables")
    probe = _virsh("version", timeout=15)
    if probe.returncode != 0 and fix:
        how = start_libvirt_daemons()
        probe = _virsh("version", timeout=15)
        if probe.returncode == 0:
            return Check("libvirtd", "ok", f"started ({how})")
    if probe.returncode != 0:
        how = ("systemctl start libvirtd" if _has_service_manager()
               else "virtlogd -d && libvirtd -d")
        return Check("libvirtd", "fail", f"not reachable at {LIBVIRT_URI}",
                     f"harness doctor --fix (or: {how})")
    version = next((ln for ln in probe.stdout.splitlines() if "libvirt" in ln.lower()), "")
    return Check("libvirtd", "ok", f"reachable at {LIBVIRT_URI} ({version.strip()})")


def check_network(fix: bool) -> Check:
    """The harness's own management network (harness.guestnet): made by the first VM's start,
    or here with --fix."""
    if shutil.which("dnsmasq") is None:
        return Check("network", "fail", "dnsmasq is missing (needed for the VM's DHCP)",
                     f"{APT_INSTALL} dnsmasq-base")
    quiet = functools.partial(virsh, LIBVIRT_URI)
    try:
        network = (ensure_management_network(quiet, lambda _text: None) if fix
                   else existing_management_network(quiet))
    except HarnessError as err:
        return Check("network", "warn", f"the harness's libvirt network: {err} (VMs then use "
                     "vagrant-libvirt's own, with 3 s slower DHCP leases)")
    if network is None:
        return Check("network", "ok", f"libvirt network {MANAGEMENT_NETWORK!r} is made when "
                     "the first VM starts; dnsmasq present")
    return Check("network", "ok", f"libvirt network {network.name!r} ({network.address}): "
                 "DHCP leases without dnsmasq's ping; dnsmasq present")


def check_pool(fix: bool) -> Check:
    info = _virsh("pool-info", "default")
    if info.returncode != 0 and fix:
        Path(POOL_PATH).mkdir(parents=True, exist_ok=True)
        _virsh("pool-define-as", "default", "dir", "--target", POOL_PATH)
        _virsh("pool-autostart", "default")
        info = _virsh("pool-info", "default")
    if info.returncode != 0:
        return Check("storage pool", "fail", "libvirt has no 'default' storage pool",
                     f"harness doctor --fix (or: virsh pool-define-as default dir --target "
                     f"{POOL_PATH} && virsh pool-start default)")
    if "running" not in info.stdout and fix:
        _virsh("pool-start", "default")
        info = _virsh("pool-info", "default")
    if "running" not in info.stdout:
        return Check("storage pool", "fail", "the 'default' pool is not running",
                     "virsh pool-start default")
    return Check("storage pool", "ok", f"'default' running ({POOL_PATH})")


def make_box_check(box: Box) -> Callable[[bool], Check]:
    def check_box(fix: bool) -> Check:
        listing = run(["vagrant", "box", "list"], check=False).stdout
        names = {line.split()[0] for line in listing.splitlines() if line.strip()}
        if box.vagrant_box in names:
            return Check("box", "ok", f"{box.vagrant_box} is in Vagrant ({box.name})")
        fix_cmd = (f"harness box build {box.name}" if box.is_local
                   else f"vagrant box add {box.vagrant_box} --provider libvirt")
        return Check("box", "fail", f"{box.vagrant_box} is not in Vagrant", fix_cmd)
    return check_box


def make_build_check(box: Box) -> Callable[[bool], Check]:
    def check_fast_build(fix: bool) -> Check:
        rootfs = box_rootfs(box)
        reason = NO_ROOTFS if rootfs is None else \
            RootfsBuilder(rootfs, Path("/tmp")).unavailable_reason()
        if reason:
            return Check("fast build", "warn",
                         f"modules will be compiled in the guest (slow under TCG): {reason}")
        return Check("fast build", "ok",
                     f"modules compile on the host in the box's root filesystem ({rootfs})")
    return check_fast_build


def check_untrusted_sandbox(fix: bool) -> Check:
    if sandbox_available():
        return Check("sandbox", "ok", "binutils and gcov read modules' files in bubblewrap, "
                                      "seeing nothing else of the host")
    return Check("sandbox", "warn", "bubblewrap cannot run here: binutils and gcov read "
                 "modules' files with time and memory limits only; do not grade untrusted "
                 "submissions on this host", f"{APT_INSTALL} bubblewrap")


def check_accel(fix: bool) -> Check:
    result = accel.probe()
    if result.kvm_works:
        return Check("accelerator", "ok", f"KVM works ({result.detail}); driver kvm")
    return Check("accelerator", "warn",
                 f"KVM unusable ({result.detail}); driver qemu. {accel.TCG_WARNING}")


def run_checks(box: Box, fix: bool = False, with_accel: bool = True) -> list[Check]:
    table: list[Callable[[bool], Check]] = [
        check_vagrant, check_vagrant_libvirt, check_qemu, check_libvirtd, check_network,
        check_pool, make_box_check(box), make_build_check(box), check_untrusted_sandbox,
    ]
    if with_accel:
        table.append(check_accel)
    results = []
    for check in table:
        try:
            results.append(check(fix))
        except HostCommandError as err:
            results.append(Check(check.__name__.removeprefix("check_"), "fail", str(err)))
    return results


def report(checks: list[Check]) -> str:
    return "\n".join(check.line() for check in checks)
