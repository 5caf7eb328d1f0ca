"""Choosing the accelerator: a real KVM probe that runs guest code, with TCG as the fallback.

An existing ``/dev/kvm`` proves nothing (on some hosts the ioctls answer, and even a boot
sector runs, but a Linux kernel never gets past its decompressor), so the probe boots guest
code under ``-accel kvm`` with a timeout: a boot sector that reaches long mode, then a real
kernel (a built box's) until it panics for want of a root file system. The libvirt driver is
``kvm`` when both get there, ``qemu`` (software emulation, TCG) otherwise. The result is cached
until the host reboots or the probe kernel changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.paths import accel_probe_file, cached_box_rootfs_dirs

PROBE_TIMEOUT_S = 30.0
QEMU = "qemu-system-x86_64"

# A boot sector that prints R (real mode), P (protected mode) and L (long mode, paging on) on
# the serial port, then halts. Assembled once from this source with GNU as:
#   cli; zero ds/ss; out 'R'; lgdt; cr0.PE=1; ljmp 0x08 -> out 'P'; identity-map 2 MiB at
#   0x1000..0x3fff; cr4.PAE, EFER.LME, cr0.PG; ljmp 0x18 -> out 'L'; hlt loop; GDT.
_LONG_MODE_PROBE = bytes.fromhex(
    "fa31c08ed88ed0bc007cbaf803b052ee0f0116c07c0f20c06683c8010f22c0ea247c080066b810008ed88e"
    "c08ed066baf803b050eebf0010000031c0b9000c0000f3abc7050010000003200000c7050020000003300000"
    "c7050030000083000000b8001000000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c0"
    "0d000000800f22c0ea927c0000180066baf803b04ceef4ebfd0f1f40000000000000000000ffff0000009acf"
    "00ffff00000092cf00ffff0000009aaf001f00a07c0000"
)
BOOT_SECTOR = _LONG_MODE_PROBE + bytes(510 - len(_LONG_MODE_PROBE)) + b"\x55\xaa"
# A Linux kernel booted without a root file system ends in this line (and qemu exits, thanks
# to panic=-1 and -no-reboot): proof that a whole kernel, interrupts and timers included, ran.
KERNEL_DONE = b"Kernel panic - not syncing"

TCG_WARNING = (
    "KVM is not usable here: the VM runs under QEMU's software emulation (TCG), "
    "which is several times slower"
)


@dataclass
class ProbeResult:
    accel: str  # "kvm" or "tcg"
    kvm_works: bool
    detail: str
    seconds: float

    @property
    def libvirt_driver(self) -> str:
        return "kvm" if self.kvm_works else "qemu"


def _run_qemu(accel: str, machine_args: list[str], wanted: bytes,
              timeout: float) -> tuple[bool, str]:
    if shutil.which(QEMU) is None:
        return False, f"{QEMU} not found (install qemu-system-x86)"
    argv = [QEMU, "-accel", accel, "-display", "none", "-nodefaults", "-no-reboot",
            "-m", "256", "-serial", "stdio", "-monitor", "none", *machine_args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    output = b""
    try:
        while time.monotonic() < deadline:
            output += proc.stdout.read() or b""
            if wanted in output:
                return True, "ok"
            if proc.poll() is not None:
                output += proc.stdout.read() or b""
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        _, err = proc.communicate()
    if wanted in output:
        return True, "ok"
    errors = [line for line in err.decode(errors="replace").splitlines() if "warning" not in line]
    if proc.returncode not in (None, -9) and errors:
        return False, errors[-1]
    shown = output.decode(errors="replace").strip().splitlines()
    last = f" (last output: {shown[-1][:80]!r})" if shown else " (no output at all)"
    return False, f"the guest did not get there within {timeout:.0f} s{last}"


def run_guest(accel: str, kernel: Path | None = None,
              timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Run guest code under ``accel``: the long-mode boot sector, then a real kernel if given."""
    with tempfile.TemporaryDirectory(prefix="harness-probe.") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(BOOT_SECTOR)
        ok, detail = _run_qemu(accel, ["-drive", f"file={disk},format=raw,if=ide"], b"RPL",
                               min(timeout, 20.0))
    if not ok:
        return False, f"a boot sector did not reach long mode under {accel}: {detail}"
    if kernel is None:
        return True, f"a boot sector reached long mode under {accel} (no kernel to boot: " \
                     "build the box to probe with a real kernel)"
    ok, detail = _run_qemu(accel, ["-kernel", str(kernel), "-append",
                                   "console=ttyS0 panic=-1 quiet"], KERNEL_DONE, timeout)
    if not ok:
        return False, f"the kernel {kernel.name} did not boot under {accel}: {detail}"
    return True, f"the kernel {kernel.name} booted under {accel}"


def find_probe_kernel() -> Path | None:
    """A Linux kernel to boot: $HARNESS_PROBE_KERNEL, a built box's, or the host's own."""
    if os.environ.get("HARNESS_PROBE_KERNEL"):
        return Path(os.environ["HARNESS_PROBE_KERNEL"])
    # Distribution kernels first: one the harness compiled (a sanitizer kernel) boots slowly.
    candidates = sorted((kernel for rootfs in cached_box_rootfs_dirs()
                         for kernel in (rootfs / "boot").glob("vmlinuz-*")),
                        key=lambda kernel: ("-harness" in kernel.name, str(kernel)))
    candidates += sorted(Path("/boot").glob("vmlinuz-*"))
    readable = [path for path in candidates if os.access(path, os.R_OK)]
    return readable[0] if readable else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe(use_cache: bool = True) -> ProbeResult:
    """KVM if a guest really runs under it, else TCG. Cached until the host reboots."""
    cache = accel_probe_file()
    kernel = find_probe_kernel()
    key = f"{_boot_id()} {kernel}"
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.pop("key") == key:
                return ProbeResult(**data)
        except (ValueError, KeyError, TypeError):
            pass
    started = time.monotonic()
    if not os.path.exists("/dev/kvm"):
        ok, detail = False, "/dev/kvm does not exist"
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        ok, detail = False, "/dev/kvm is not accessible (add yourself to group kvm)"
    else:
        ok, detail = run_guest("kvm", kernel)
    result = ProbeResult("kvm" if ok else "tcg", ok, detail, round(time.monotonic() - started, 1))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({**asdict(result), "key": key}))
    return result


def choose_driver(requested: str = "auto") -> tuple[str, ProbeResult | None]:
    """Map --vm-driver (auto|kvm|qemu) to a libvirt driver; auto runs the probe."""
    if requested in ("kvm", "qemu"):
        return requested, None
    if requested != "auto":
        raise ValueError(f"unknown driver {requested!r}: use auto, kvm or qemu")
    result = probe()
    return result.libvirt_driver, result
