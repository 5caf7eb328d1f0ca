#!/usr/bin/env python3
"""Benchmarks (not tests): figures printed as a table and written as JSON.

Measured side by side in one run, so ratios hold on a noisy shared machine:
- the per-module cycle for modules/hello (sync, build, insmod, capture, rmmod) through the
  harness and as bare `ssh`/`scp` commands, with the harness's overhead as a ratio;
- the same cycle warm (unchanged sources: the harness reuses its build);
- getting a clean kernel back: snapshot revert vs reboot (--with-reboot);
- the oops parser's throughput on ../shared/oops-corpus (MB/s).

Usage: python bench/bench.py [--rounds N] [--with-reboot] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.build import make_command  # noqa: E402
from harness.kmod import Guest, Module  # noqa: E402
from harness.oops.corpus import measure  # noqa: E402
from harness.session import VMOptions, make_vm, ready_vm  # noqa: E402
from harness.transport import SSHTarget  # noqa: E402

PHASES = ("sync", "build", "insmod", "capture", "rmmod")


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def ssh_argv(target: SSHTarget) -> list[str]:
    return ["ssh", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-i", target.key_file, "-p", str(target.port),
            f"{target.user}@{target.host}"]


def bare_cycle(target: SSHTarget, source: Path, remote: str) -> dict[str, float]:
    ssh = ssh_argv(target)

    def sh(command: str) -> None:
        subprocess.run([*ssh, command], check=True, capture_output=True)

    scp = ["scp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-i", target.key_file, "-P", str(target.port)]
    sh(f"rm -rf {remote} && mkdir -p {remote}")
    return {
        "sync": timed(lambda: subprocess.run(
            [*scp, *[str(p) for p in sorted(source.iterdir()) if p.is_file()],
             f"{target.user}@{target.host}:{remote}/"], check=True)),
        # The same make command the harness runs (harness.build.make_command).
        "build": timed(lambda: sh(make_command(remote))),
        "insmod": timed(lambda: sh(f"sudo insmod {remote}/hello.ko")),
        "capture": timed(lambda: sh("sudo dmesg | tail -5")),
        "rmmod": timed(lambda: sh("sudo rmmod hello")),
    }


def harness_cycle(guest: Guest, source: Path, cold: bool) -> dict[str, float]:
    module = Module(guest, source)
    if cold:  # nothing in the guest yet: every file is sent, the module compiled
        guest.transport.run(["rm", "-rf", module.remote_dir]).check()
    capture = guest.kernel_log.capture()
    figures = {"sync": timed(module.sync)}
    figures["build"] = timed(lambda: module.build(force=cold))
    # load() syncs and checks the build again (cheap); that cost is part of the harness's insmod.
    figures["insmod"] = timed(module.load)
    figures["capture"] = timed(capture.refresh)
    figures["rmmod"] = timed(module.unload)
    return figures


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {phase: statistics.median(r[phase] for r in rows) for phase in PHASES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-reboot", action="store_true")
    parser.add_argument("--json", default=str(ROOT / ".harness" / "bench.json"))
    args = parser.parse_args()

    vm = ready_vm(make_vm(VMOptions(), ROOT))
    guest = Guest(vm.transport(), vm.state / "bench-build-cache")
    print("columns: bare ssh/scp commands; the harness, cold (files sent, module compiled);"
          " the harness, warm (unchanged module: nothing sent, build reused)")
    source = ROOT / "modules" / "hello"
    target = vm.ssh_target()
    rows: dict[str, list[dict[str, float]]] = {"bare": [], "harness": [], "harness-warm": []}
    for round_number in range(args.rounds):
        # Interleaved, so both see the same machine load.
        rows["bare"].append(bare_cycle(target, source, f"/tmp/bench-bare-{round_number}"))
        rows["harness"].append(harness_cycle(guest, source, cold=True))
        rows["harness-warm"].append(harness_cycle(guest, source, cold=False))
    results: dict[str, object] = {name: median(r) for name, r in rows.items()}
    revert = [vm.restore_snapshot(archive_as="bench") for _ in range(2)]
    results["snapshot_revert_s"] = statistics.median(revert)
    if args.with_reboot:
        results["reboot_s"] = vm.reboot()
        vm.save_snapshot()
    corpus = ROOT.parent / "shared" / "oops-corpus" / "syzkaller-linux"
    if corpus.is_dir():
        agreement = measure(corpus)
        results["oops_parser_mb_per_s"] = agreement.megabytes / agreement.seconds
        results["oops_corpus"] = agreement.figures()

    print(f"{'phase':10} {'bare ssh':>10} {'harness':>10} {'ratio':>7} {'warm':>10} {'ratio':>7}")
    bare, cold, warm = (results[k] for k in ("bare", "harness", "harness-warm"))
    for phase in (*PHASES, "total"):
        b = sum(bare.values()) if phase == "total" else bare[phase]  # type: ignore[union-attr]
        c = sum(cold.values()) if phase == "total" else cold[phase]  # type: ignore[union-attr]
        w = sum(warm.values()) if phase == "total" else warm[phase]  # type: ignore[union-attr]
        print(f"{phase:10} {b:9.2f}s {c:9.2f}s {c / b:6.2f}x {w:9.2f}s {w / b:6.2f}x")
    print(f"snapshot revert: {results['snapshot_revert_s']:.1f} s"
          + (f"; reboot: {results['reboot_s']:.1f} s" if "reboot_s" in results else ""))
    if "oops_corpus" in results:
        print(f"oops parser: {results['oops_corpus']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"(median of {args.rounds} rounds; JSON in {shlex.quote(args.json)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
