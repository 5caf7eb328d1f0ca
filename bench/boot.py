"""Where a cold start's time goes: a VM of the box made from nothing (its domain destroyed
first; the box's volume already in libvirt's pool), up to the first SSH command and the clean
snapshot, phase by phase.

Three clocks, put side by side on the host's:
- vagrant's own steps, from the time each of its progress lines arrived (domain created,
  started, DHCP lease, SSH ready);
- the serial console, read as it is written: the first byte (firmware and bootloader done),
  the kernel's banner, the root mount, systemd's start, sshd's start;
- in the guest afterwards: ``systemd-analyze`` (kernel, initrd, user space) and the chain to
  sshd (``critical-chain``), and the slowest units (``blame``).

Usage: python bench/boot.py [--box debian-12] [--rounds 1] [--json FILE]
The VMs live in bench/.project-boot and are destroyed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.cleanstate import ready_vm  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.session import VMOptions, make_vm  # noqa: E402

PROJECT = ROOT / "bench" / ".project-boot"

# (phase name, regex on a vagrant/harness progress line): the time the line arrived ends it.
VAGRANT_MARKS = (
    ("vagrant: start, image of the box volume", r"Creating image \(snapshot of base box"),
    ("vagrant: domain defined", r"Creating domain with the following settings"),
    ("vagrant: domain started", r"Starting domain\."),
    ("vagrant: DHCP lease", r"Waiting for machine to boot"),
    ("vagrant: SSH answered", r"Machine booted and ready"),
    ("vagrant up returned", r"VM up in"),
    ("harness: SSH as the harness", r"saving a snapshot of the clean"),
)
# (mark, regex on the serial console): the host time the line first appeared.
SERIAL_MARKS = (
    ("console: first byte (firmware, bootloader)", r"."),
    ("console: kernel banner", r"Linux version"),
    ("console: initramfs /init", r"Run /init as init process"),
    ("console: root mounted", r"EXT4-fs \(vda1\): mounted|VFS: Mounted root"),
    ("console: systemd starts", r"systemd\[1\]: |Welcome to|systemd \d+ running"),
    ("console: sshd started", r"Started .*(OpenBSD Secure Shell|ssh\.service)"),
    ("console: login prompt", r"login:"),
)


class StampedLog(io.TextIOBase):
    """The progress stream: each line with the seconds since the start when it arrived."""

    def __init__(self, started: float):
        self.started, self.lines = started, []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.lines.append((time.perf_counter() - self.started, line.strip()))
        return len(text)


def watch_serial(path: Path, started: float, marks: dict[str, float],
                 stop: threading.Event) -> None:
    """Poll the console file; note when each mark's line first appears."""
    seen = ""
    while not stop.is_set():
        try:
            seen = path.read_text(errors="replace")
        except FileNotFoundError:
            seen = ""
        now = time.perf_counter() - started
        for name, pattern in SERIAL_MARKS:
            if name not in marks and re.search(pattern, seen):
                marks[name] = now
        time.sleep(0.05)


def one_cold_start(box: str, keep: bool = False) -> dict:
    folder = PROJECT / box
    null = io.StringIO()
    vm = make_vm(VMOptions(box=box), folder, log=null, catalogue_dir=ROOT)
    vm.destroy()
    vm.serial_log.unlink(missing_ok=True)  # the last boot's console: not this one's marks
    started = time.perf_counter()
    log = StampedLog(started)
    vm = make_vm(VMOptions(box=box), folder, log=log, catalogue_dir=ROOT)
    serial: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_serial,
                               args=(vm.serial_log, started, serial, stop), daemon=True)
    watcher.start()
    try:
        ready_vm(vm)
    finally:
        stop.set()
        watcher.join()
    snapshot_done = time.perf_counter() - started
    first = time.perf_counter()
    vm.transport().run("true", timeout=60).check()
    first_command = time.perf_counter() - first
    marks = {}
    for name, pattern in VAGRANT_MARKS:
        found = next((t for t, line in log.lines if re.search(pattern, line)), None)
        if found is not None:
            marks[name] = found
    marks.update(serial)
    marks["clean snapshot saved (ready for the first test)"] = snapshot_done
    def run(command: str) -> str:
        try:
            return vm.transport().run(command + " 2>&1", sudo=True, timeout=300).stdout.strip()
        except HarnessError as err:  # a sanitizer kernel's guest can be slow to answer this
            return f"(no answer: {err})"

    guest = {
        "systemd-analyze": run("systemd-analyze time | head -3"),
        "critical-chain": run("systemd-analyze critical-chain ssh.service | tail -n +3"),
        "blame": run("systemd-analyze blame | head -15"),
        "kernel cmdline": run("cat /proc/cmdline"),
    }
    if not keep:
        vm.destroy()
    return {"marks": dict(sorted(marks.items(), key=lambda kv: kv[1])),
            "first_ssh_command_s": round(first_command, 2), "guest": guest,
            "to_first_ssh_s": round(marks.get("vagrant: SSH answered", float("nan")), 1),
            "ready_s": round(snapshot_done, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", default="debian-12")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=str(ROOT / ".harness" / "bench-boot.json"))
    parser.add_argument("--keep", action="store_true",
                        help="leave the last VM running (bench/.project-boot/BOX) to look at")
    args = parser.parse_args()
    runs = [one_cold_start(args.box, keep=args.keep and n == args.rounds - 1)
            for n in range(args.rounds)]
    for number, run in enumerate(runs, start=1):
        print(f"cold start {number} of {args.box}:")
        previous = 0.0
        for name, at in run["marks"].items():
            print(f"  {at:7.1f} s  (+{at - previous:6.1f})  {name}")
            previous = at
        for name, text in run["guest"].items():
            print(f"  guest {name}:\n    " + "\n    ".join(text.splitlines()))
    to_ssh = statistics.median(r["to_first_ssh_s"] for r in runs)
    ready = statistics.median(r["ready_s"] for r in runs)
    print(f"{args.box}: cold vagrant up to the first SSH answer {to_ssh:.1f} s, ready for the "
          f"first test {ready:.1f} s (median of {len(runs)})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"box": args.box, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
