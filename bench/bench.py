#!/usr/bin/env python3
"""Benchmarks (not tests): figures printed as a table and written as JSON, with the ratios
against the project's targets.

Measured side by side in one run, so ratios hold on a noisy shared machine:
- startup: a cold `pytest -m vm` to its first result (box cached, no VM yet) against a second
  one (the first left its VM saved) -- target: second <= 1/3 of cold;
- the per-module cycle for modules/hello (sync, build, insmod, capture, rmmod): bare ssh/scp with
  the build in the guest; the harness building in the guest; the harness building on the host in
  the box's root filesystem after an edit (a real compile); and unchanged (build reused) --
  target: an edited module's cycle <= 1/5 of the in-guest build;
- getting a clean kernel back: snapshot revert vs reboot;
- grading throughput (students per minute) with --jobs 1 and 2;
- the oops parser's throughput on ../shared/oops-corpus (MB/s), and `harness oops --json` as a
  whole process on the corpus concatenated to 18 MB, with one process and with every CPU, side
  by side (MB/s; target >= 20);
- sanitizers: the planted-bug folder's clean control on the stock box and on the debug box side
  by side: its load/unload cycle (ratio debug/stock), what the per-test leak check adds (kmem
  ledger on stock, kmemleak on debug; targets 0.5 s and 2 s), and 20 consecutive runs of the
  control with the leak check on, which must give zero findings on both;
- history: `harness history add` of a 1,000-result JUnit file, and `harness history report`
  over 100 runs x 500 tests, as whole processes (targets: 1 s, 2 s, a page <= 2 MB);
- reruns: what a re-run costs, as whole pytest runs of tests/scenarios/scenario_nightly.py's
  test_sometimes_crashes side by side: it passes at once; it crashes (no re-run); it crashes,
  then passes on a re-run (target: the third minus the second = one restore plus the test);
- coverage: modules/llist's load/unload cycle on the debug box with --vm-coverage's work
  (profiled build, counter reset and read, gcov's line counts of the test) and without it,
  alternated -- target: <= 1.5x.

Startup and grading run in a VM project of their own (bench/.project), destroyed at the end.

Usage: python bench/bench.py [--rounds N]
                             [--only startup,cycle,recovery,grading,parser,cli,sanitizers,
                                     coverage,history,reruns]
                             [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.build import make_command  # noqa: E402
from harness.cleanstate import ready_vm  # noqa: E402
from harness.coverage import CoverageCollector  # noqa: E402
from harness.grade.runner import grade  # noqa: E402
from harness.guest import Guest  # noqa: E402
from harness.kmod import Module  # noqa: E402
from harness.oops.corpus import measure  # noqa: E402
from harness.paths import other_vm_project_dirs  # noqa: E402
from harness.session import (  # noqa: E402
    HarnessSession,
    VMOptions,
    make_guest,
    make_vm,
)
from harness.transport import SSHTarget  # noqa: E402

PHASES = ("sync", "build", "insmod", "capture", "rmmod")
SECTIONS = ("startup", "cycle", "recovery", "grading", "parser", "cli", "sanitizers", "coverage",
            "history", "reruns", "lane", "matrix")
BENCH_PROJECT = ROOT / "bench" / ".project"
ASSIGNMENT = ROOT / "examples" / "llist-assignment"
GRADING_STUDENTS = ("correct", "wrong_output", "memory_not_freed", "null_dereference_on_exit")
TARGETS = {"edited_cycle_vs_guest_build": 1 / 5, "second_start_vs_cold": 1 / 3,
           "leak_check_s": {"debian-12": 0.5, "debian-12-debug": 2.0},
           "coverage_cycle_ratio": 1.5}
SANITIZER_BOXES = ("debian-12", "debian-12-debug")
PLANTED = ROOT / "tests" / "vm" / "modules" / "planted"
CLEAN_RUNS = 20


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


def harness_cycle(guest: Guest, source: Path, cold: bool, mode: str) -> dict[str, float]:
    """One cycle; ``cold``: the module was just edited (files sent, a real compile)."""
    module = Module(guest, source, build_mode=mode)
    if cold:
        with open(source / "hello.c", "a") as edit:
            edit.write(f"/* edit {time.time_ns()} */\n")
    capture = guest.kernel_log.capture()
    figures = {"sync": timed(module.sync)}
    figures["build"] = timed(module.build)
    # load() syncs and checks the build again (cheap); that cost is part of the harness's insmod.
    figures["insmod"] = timed(module.load)
    figures["capture"] = timed(capture.refresh)
    figures["rmmod"] = timed(module.unload)
    return figures


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {phase: statistics.median(r[phase] for r in rows) for phase in PHASES}


def first_result_seconds(extra: list[str]) -> tuple[float, str]:
    """Seconds from starting `pytest -m vm` to its first test result, and that result line."""
    argv = [sys.executable, "-m", "pytest", "bench/first_result", "-m", "vm", "-v",
            "-p", "no:cacheprovider", f"--vm-project={BENCH_PROJECT}", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    seconds, line = float("nan"), ""
    for text in proc.stdout:
        if seconds != seconds and (" PASSED" in text or " FAILED" in text or " ERROR" in text):
            seconds, line = time.perf_counter() - started, text.strip()
    proc.wait()
    return seconds, line


def bench_startup(results: dict) -> None:
    make_vm(VMOptions(), BENCH_PROJECT, log=io.StringIO(), catalogue_dir=ROOT).destroy()
    cold, cold_line = first_result_seconds(["--vm-end=save"])
    second, second_line = first_result_seconds(["--vm-end=save"])
    print(f"startup: cold {cold:.1f} s ({cold_line}); second {second:.1f} s ({second_line})")
    results["startup"] = {"cold_first_result_s": cold, "second_first_result_s": second,
                          "ratio": second / cold}


def bench_cycle(results: dict, rounds: int) -> None:
    vm = ready_vm(make_vm(VMOptions(), ROOT))
    in_guest = make_guest(vm, build_mode="guest", cache_name="bench-build-cache")
    on_host = make_guest(vm, build_mode="host", cache_name="bench-build-cache")
    target = vm.ssh_target()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    rows: dict[str, list[dict[str, float]]] = {
        "bare": [], "harness-guest": [], "harness-host": [], "harness-unchanged": []}
    try:
        for mode in ("guest", "host"):
            shutil.copytree(ROOT / "modules" / "hello", work / mode)
        for round_number in range(rounds):
            # Interleaved, so all see the same machine load.
            rows["bare"].append(bare_cycle(target, ROOT / "modules" / "hello",
                                           f"/tmp/bench-bare-{round_number}"))
            rows["harness-guest"].append(harness_cycle(in_guest, work / "guest", True, "guest"))
            rows["harness-host"].append(harness_cycle(on_host, work / "host", True, "host"))
            rows["harness-unchanged"].append(harness_cycle(on_host, work / "host", False, "host"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cycle = {name: median(r) for name, r in rows.items()}
    results["cycle"] = cycle
    print(f"{'phase':9}" + "".join(f"{name:>19}" for name in cycle))
    for phase in (*PHASES, "total"):
        cells = [sum(c.values()) if phase == "total" else c[phase] for c in cycle.values()]
        print(f"{phase:9}" + "".join(f"{value:18.2f}s" for value in cells))
    guest_build = cycle["harness-guest"]["build"]
    edited = sum(cycle["harness-host"].values())
    results["cycle_ratios"] = {
        "harness_guest_vs_bare": sum(cycle["harness-guest"].values()) / sum(cycle["bare"].values()),
        "edited_cycle_vs_guest_build": edited / guest_build,
        "unchanged_cycle_vs_guest_build": sum(cycle["harness-unchanged"].values()) / guest_build,
        "host_build_vs_guest_build": cycle["harness-host"]["build"] / guest_build,
    }


def bench_recovery(results: dict) -> None:
    vm = ready_vm(make_vm(VMOptions(), ROOT))
    revert = [vm.restore_snapshot(archive_as="bench") for _ in range(2)]
    reboot = vm.reboot()
    vm.save_snapshot()
    results["recovery"] = {"snapshot_revert_s": statistics.median(revert), "reboot_s": reboot,
                           "ratio": statistics.median(revert) / reboot}
    print(f"recovery: snapshot revert {statistics.median(revert):.1f} s, reboot {reboot:.1f} s")


def bench_grading(results: dict) -> None:
    expected = yaml.safe_load((ASSIGNMENT / "expected-scores.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    submissions = work / "submissions"
    submissions.mkdir()
    for path in (ASSIGNMENT / "submissions").iterdir():
        if path.name.split(".")[0] in GRADING_STUDENTS:
            (submissions / path.name).symlink_to(path)
    figures: dict[str, dict] = {}
    with open(work / "grade.log", "w") as log:
        # The VMs (the project's for --jobs 1, one per worker for --jobs 2) are made beforehand
        # and saved, so both measured runs start from saved VMs, as a teacher's second run does.
        warm = work / "warm-up"
        warm.mkdir()
        for name in ("correct", "memory_not_freed"):  # two groups: both workers get one
            (warm / name).symlink_to(ASSIGNMENT / "submissions" / name)
        for jobs in (1, 2):
            grade(warm, ASSIGNMENT / "assignment.yaml", work / f"out-warm-{jobs}", jobs=jobs,
                  log=log, vm_project=BENCH_PROJECT)
        for variant, jobs in (("jobs1", 1), ("jobs2", 2)):
            started = time.perf_counter()
            graded = grade(submissions, ASSIGNMENT / "assignment.yaml", work / f"out-{variant}",
                           jobs=jobs, log=log, vm_project=BENCH_PROJECT)
            seconds = time.perf_counter() - started
            wrong = {r.student: r.score for r in graded if r.score != expected[r.student]}
            # Where a student's time goes: test setups (the clean-kernel restore before the
            # student's first test, after a crash, and the build) against the tests themselves.
            setup = sum(t.get("setup_seconds", 0.0) for r in graded for t in r.tests)
            calls = sum(t.get("seconds", 0.0) for r in graded for t in r.tests)
            figures[variant] = {"students": len(graded), "seconds": seconds,
                                      "students_per_minute": 60 * len(graded) / seconds,
                                      "setup_seconds": setup, "test_seconds": calls,
                                      "scores_differing_from_expected": wrong}
            print(f"grading --jobs {jobs}: {len(graded)} students in {seconds:.0f} s = "
                  f"{60 * len(graded) / seconds:.2f} students/min; summed over students: "
                  f"setup (restore, build) {setup:.0f} s, tests {calls:.0f} s"
                  f"{'; UNEXPECTED SCORES ' + str(wrong) if wrong else ''}")
    shutil.rmtree(work, ignore_errors=True)
    figures["speedup"] = figures["jobs2"]["students_per_minute"] / \
        figures["jobs1"]["students_per_minute"]
    print(f"grading: --jobs 2 speedup {figures['speedup']:.2f}x (target: >= 4 students/min "
          "with --jobs 2)")
    results["grading"] = figures


def bench_parser(results: dict) -> None:
    corpus = ROOT.parent / "shared" / "oops-corpus" / "syzkaller-linux"
    if not corpus.is_dir():
        print(f"parser: no corpus at {corpus}; skipped")
        return
    measure(corpus)  # a warm-up pass: regex compilation is not parsing
    # The fastest of five passes: on a shared machine the others measure the neighbours.
    parts = min((measure(corpus) for _ in range(5)), key=lambda p: p["all"].seconds)
    results["parser"] = {"mb_per_s": parts["all"].speed,
                         "corpus": {part: figures.figures() for part, figures in parts.items()}}
    for part, figures in parts.items():
        print(f"oops parser, {part}: {figures.figures()}")
    print(f"oops parser: {parts['all'].speed:.1f} MB/s, the fastest of 5 passes (target: >= 20)")


CLI_LOG_BYTES = 18_000_000  # the corpus concatenated to a large console log


def bench_cli(results: dict) -> None:
    """`harness oops --json` as users run it, a whole process, on one large log: the corpus
    (its logs without their expected reports) concatenated to 18 MB."""
    corpus = ROOT.parent / "shared" / "oops-corpus" / "syzkaller-linux"
    if not corpus.is_dir():
        print(f"cli: no corpus at {corpus}; skipped")
        return
    logs = []
    for path in sorted(corpus.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0):
        text = path.read_bytes()
        logs.append(text.split(b"\nREPORT:\n", 1)[0] + b"\n")
    blob, data = b"".join(logs), bytearray()
    while len(data) < CLI_LOG_BYTES:
        data += blob
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        log.write(data)
        log.flush()
        runs = {"one process": ["--jobs", "1"], "every CPU": []}
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(4):  # the first is a warm-up (page cache, .pyc files); A B A B ...
            for name, extra in runs.items():
                argv = [sys.executable, "-m", "harness.cli", "oops", "--json", *extra, log.name]
                started = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, check=False)
                seconds[name].append(time.perf_counter() - started)
        reports = len(json.loads(done.stdout))
    figures = {}
    for name, times in seconds.items():
        best = min(times[1:])
        figures[name] = {"seconds": round(best, 3), "mb_per_s": round(len(data) / best / 1e6, 1)}
        print(f"harness oops --json on a {len(data) / 1e6:.1f} MB log ({reports} reports), "
              f"{name}: {best:.2f} s, {len(data) / best / 1e6:.1f} MB/s, the fastest of 3")
    results["cli"] = {"bytes": len(data), "reports": reports, "cpus": len(os.sched_getaffinity(0)),
                      **figures["every CPU"], "one_process": figures["one process"]}
    print(f"harness oops: {figures['every CPU']['mb_per_s']} MB/s with every CPU "
          f"({results['cli']['cpus']}), target >= 20")


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    return time.perf_counter() - started, done.stdout + done.stderr


def bench_history(results: dict) -> None:
    """The nightly's database and dashboard as users run them (whole processes)."""
    from harness.nightly.history import History, Result, Run

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        cases = "".join(
            f'<testcase classname="tests.vm.test_{n % 40}" name="test_{n}" time="1.0">'
            + (f'<properties><property name="box" value="debian-12"/><property '
               f'name="crash_title" value="WARNING in f{n % 7}+0x1c/0x40"/></properties>'
               f'<failure message="crash">trace</failure>' if n % 10 == 0 else "")
            + "</testcase>" for n in range(1000))
        junit = work / "junit.xml"
        junit.write_text(f'<testsuites><testsuite name="pytest" timestamp="2026-12-05T02:00:00"'
                         f'>{cases}</testsuite></testsuites>')
        add = [sys.executable, "-m", "harness.cli", "history", "add", str(junit), "--commit",
               "bench"]
        adds = [_timed([*add, "--db", str(work / f"add{i}.sqlite")])[0] for i in range(4)]
        db = work / "big.sqlite"
        history = History(db)
        outcomes = ("passed",) * 8 + ("failed", "flaky")
        for night in range(100):
            history.add(Run(f"night{night}", f"d{night}", f"2026-08-{1 + night // 28:02d}T"
                            f"{night % 24:02d}:00:00", [
                Result(f"tests.vm.test_x::test_{t}", outcomes[(t * 7 + night) % 10],
                       "debian-12", "6.1.0", f"KASAN: use-after-free in f{t % 9}"
                       if outcomes[(t * 7 + night) % 10] == "failed" else None, 1.0)
                for t in range(500)]))
        history.close()
        report = [sys.executable, "-m", "harness.cli", "history", "report", "--db", str(db),
                  "--out", str(work / "dash")]
        reports = [_timed(report)[0] for _ in range(4)]
        size = (work / "dash" / "index.html").stat().st_size
    add_s, report_s = min(adds[1:]), min(reports[1:])  # the first: a warm-up
    results["history"] = {"add_1000_s": round(add_s, 3), "report_100x500_s": round(report_s, 3),
                          "page_bytes": size}
    print(f"history add, 1,000 results: {add_s:.2f} s (target <= 1); history report, 100 runs x "
          f"500 tests: {report_s:.2f} s (target <= 2), page {size / 1e6:.2f} MB (target <= 2); "
          "the fastest of 3 whole processes")


def bench_reruns(results: dict, rounds: int) -> None:
    """What a re-run costs: the flaky case minus the crash alone, against one attempt."""
    scenario = "tests/scenarios/scenario_nightly.py::test_sometimes_crashes"
    cases = {"passes": ("ok", 0), "crashes": ("crash", 0), "crashes, re-run passes":
             ("crash ok", 1)}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as folder:
        schedule = Path(folder) / "schedule"
        for round_ in range(rounds + 1):  # round 0: a warm-up (build, resume)
            for name, (words, reruns) in cases.items():
                schedule.write_text(words)
                took, out = _timed([sys.executable, "-m", "pytest", scenario, "--vm-reuse",
                                    "--vm-keep", "-p", "no:cacheprovider",
                                    f"--vm-reruns={reruns}"],
                                   {"HARNESS_SCENARIO_SCHEDULE": str(schedule)})
                if round_:
                    seconds[name].append(took)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    rerun = median["crashes, re-run passes"] - median["crashes"]
    results["reruns"] = {**{k: round(v, 2) for k, v in median.items()},
                         "rerun_cost_s": round(rerun, 2)}
    for name, value in median.items():
        print(f"reruns: pytest run, the test {name}: {value:.1f} s (median of {rounds})")
    print(f"reruns: a re-run costs {rerun:.1f} s (crash + re-run minus crash alone); one "
          f"passing attempt's whole run is {median['passes']:.1f} s")


LANE_MATRIX = "debian"  # boxes.yaml: five kernels, 5.10 to sid's
MATRIX_BOXES = ("debian-11", "debian-12", "debian-12-k6.12")
MATRIX_SCENARIO = "tests/scenarios/scenario_matrix.py"


def bench_lane(results: dict, rounds: int) -> None:
    """The build-only lane as users run it: `harness build MODULE --matrix debian`, a whole
    process, the boxes' root filesystems already built."""
    figures = {}
    for module in ("modules/classdev", "modules/classdev-5.10"):
        runs = []
        with tempfile.TemporaryDirectory() as out:
            for _ in range(rounds + 1):  # the first: a warm-up (page cache)
                took, text = _timed([sys.executable, "-m", "harness.cli", "build", module,
                                     "--matrix", LANE_MATRIX, "--out", out])
                runs.append(took)
        figures[module] = {"median_s": round(statistics.median(runs[1:]), 2),
                           "max_s": round(max(runs[1:]), 2)}
        print(f"lane: harness build {module} --matrix {LANE_MATRIX}: "
              f"{figures[module]['median_s']:.1f} s median of {rounds} (max "
              f"{figures[module]['max_s']:.1f}; target <= 30 s)\n  "
              + "\n  ".join(text.strip().splitlines()))
    results["lane"] = figures


def bench_matrix(results: dict, rounds: int) -> None:
    """A pytest matrix of three boxes against the three single-box runs of the same tests, side
    by side in each round, all whole processes on the checkout's saved VMs (each run resumes
    them and saves them again), without and with -n 2."""
    from harness.boxes import load_catalogue
    from harness.paths import vm_project_dir

    catalogue = load_catalogue(ROOT / "boxes.yaml")
    base = [sys.executable, "-m", "pytest", MATRIX_SCENARIO, "-p", "no:cacheprovider", "-q"]
    seconds: dict[str, list[float]] = {"singles": [], "matrix": [], "matrix -n 2": []}
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(rounds + 1):  # round 0: a warm-up (boots what is not saved yet)
            singles = 0.0
            for box in MATRIX_BOXES:
                folder = ROOT if box == catalogue.default else vm_project_dir(ROOT, None, box)
                singles += _timed([*base, "--vm-box", box, "--vm-project", str(folder)])[0]
            matrix = _timed([*base, "--vm-box", ",".join(MATRIX_BOXES),
                             f"--vm-matrix-report={out}"])[0]
            parallel = _timed([*base, "--vm-box", ",".join(MATRIX_BOXES), "-n", "2",
                               f"--vm-matrix-report={out}"])[0]
            if round_:
                for name, value in (("singles", singles), ("matrix", matrix),
                                    ("matrix -n 2", parallel)):
                    seconds[name].append(value)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {name: round(median[name] / median["singles"], 2) for name in ("matrix",
                                                                             "matrix -n 2")}
    results["matrix"] = {**{k: round(v, 1) for k, v in median.items()}, "ratios": ratios}
    print(f"matrix: {len(MATRIX_BOXES)} single-box runs together {median['singles']:.1f} s; "
          f"one matrix run {median['matrix']:.1f} s ({ratios['matrix']:.2f}x, target <= 1.2); "
          f"with -n 2 {median['matrix -n 2']:.1f} s ({ratios['matrix -n 2']:.2f}x, target "
          f"<= 1.0); medians of {rounds} rounds")


def _control_test(session: HarnessSession, mode: str) -> tuple[float, int, float]:
    """One test of the clean control with leak check ``mode``: (seconds from the test's start
    to its verdict, findings, seconds the verdict took)."""
    session.leak_check_mode = mode
    started = time.perf_counter()
    run = session.new_test(f"bench-control-{mode}")
    module = run.module(PLANTED, name="clean_control")
    module.load()
    module.unload()
    judged = time.perf_counter()
    verdict = run.finish()
    done = time.perf_counter()
    findings = len(verdict.reports) + len(verdict.new_taint)
    if verdict.kernel_broken:
        print(f"  {session.vm.settings.box.name}: finding: {verdict.message()}", file=sys.stderr)
        session.restore_clean(archive_as="bench-control")
    return done - started, findings, done - judged


def bench_sanitizers(results: dict, rounds: int) -> None:
    figures: dict[str, dict] = {}
    for box in SANITIZER_BOXES:
        # The VMs `pytest -m vm` keeps for this checkout (the debug box's is the vm_box
        # marker's): resumed from their clean snapshots when they exist, booted otherwise.
        folder = ROOT if box == "debian-12" else ROOT / ".harness" / "boxes" / box
        vm = ready_vm(make_vm(VMOptions(box=box), folder, catalogue_dir=ROOT))
        session = HarnessSession(vm, make_guest(vm))
        _control_test(session, "off")  # the build, and the kernel's first load of it
        # Alternated, so that a change in the shared host's load hits both alike.
        off, on = [], []
        for _ in range(rounds):
            off.append(_control_test(session, "off"))
            on.append(_control_test(session, "auto"))
        clean = [_control_test(session, "auto")[1] for _ in range(CLEAN_RUNS)]
        check = type(session.leak_check()).__name__
        figures[box] = {
            "cycle_s": round(statistics.median(t for t, _, _ in off), 2),
            "cycle_with_leak_check_s": round(statistics.median(t for t, _, _ in on), 2),
            "verdict_without_leak_check_s": round(statistics.median(v for _, _, v in off), 2),
            "verdict_with_leak_check_s": round(statistics.median(v for _, _, v in on), 2),
            "leak_check": check,
            "clean_runs": CLEAN_RUNS, "clean_runs_with_findings": sum(1 for n in clean if n),
        }
        # The whole cost a test pays: the check's start at the module's load and its verdict.
        figures[box]["leak_check_added_s"] = round(
            figures[box]["cycle_with_leak_check_s"] - figures[box]["cycle_s"], 2)
        figures[box]["leak_check_added_to_verdict_s"] = round(
            figures[box]["verdict_with_leak_check_s"]
            - figures[box]["verdict_without_leak_check_s"], 2)
        print(f"sanitizers {box}: {figures[box]}", file=sys.stderr)
        vm.power_off()
    figures["cycle_ratio_debug_vs_stock"] = round(
        figures["debian-12-debug"]["cycle_s"] / figures["debian-12"]["cycle_s"], 2)
    results["sanitizers"] = figures


def _llist_test(session: HarnessSession, collector: CoverageCollector | None) -> float:
    """One test loading and unloading modules/llist; with ``collector``, as --vm-coverage runs
    it, including gcov's reading of the test's counters (done at the end of a real run)."""
    session.coverage = collector
    session.guest.builder.profile = collector is not None
    started = time.perf_counter()
    run = session.new_test("bench-coverage")
    module = run.module(ROOT / "modules" / "llist")
    module.load()
    module.unload()
    verdict = run.finish()
    if collector is not None:
        report = collector.report()
        collector.counters.clear()
        if not report.hits or report.problems:
            raise RuntimeError(f"coverage counted nothing: {report.problems}")
    if verdict.kernel_broken:
        raise RuntimeError(verdict.message())
    return time.perf_counter() - started


def bench_coverage(results: dict, rounds: int) -> None:
    box = "debian-12-debug"
    vm = ready_vm(make_vm(VMOptions(box=box), ROOT / ".harness" / "boxes" / box,
                          catalogue_dir=ROOT))
    session = HarnessSession(vm, make_guest(vm))
    collector = CoverageCollector()
    why_not = session.count_lines(collector)
    if why_not:
        raise RuntimeError(why_not)
    _llist_test(session, None)  # both builds, and the kernel's first load of each
    _llist_test(session, collector)
    without, with_coverage = [], []
    for _ in range(rounds):  # alternated: the shared host's load changes hit both alike
        without.append(_llist_test(session, None))
        with_coverage.append(_llist_test(session, collector))
    figures = {"box": box, "cycle_s": round(statistics.median(without), 2),
               "cycle_with_coverage_s": round(statistics.median(with_coverage), 2)}
    figures["ratio"] = round(figures["cycle_with_coverage_s"] / figures["cycle_s"], 2)
    print(f"coverage {box}: {figures}", file=sys.stderr)
    vm.power_off()
    results["coverage"] = figures


def destroy_bench_vms() -> None:
    null = io.StringIO()
    for what, folder in [*other_vm_project_dirs(BENCH_PROJECT), ("", BENCH_PROJECT)]:
        if (folder / ".harness").is_dir():
            options = VMOptions(box=folder.name) if what.startswith("box ") else VMOptions()
            make_vm(options, folder, log=null, catalogue_dir=ROOT).destroy()


def summary(results: dict) -> list[str]:
    lines = []
    if "cycle_ratios" in results:
        ratio = results["cycle_ratios"]["edited_cycle_vs_guest_build"]
        goal = TARGETS["edited_cycle_vs_guest_build"]
        lines.append(f"edited-module cycle / in-guest build = {ratio:.3f} (target <= {goal:.2f}): "
                     f"{'met' if ratio <= goal else 'NOT met'}")
    if "startup" in results:
        ratio = results["startup"]["ratio"]
        goal = TARGETS["second_start_vs_cold"]
        lines.append(f"second pytest -m vm / cold, to first result = {ratio:.3f} "
                     f"(target <= {goal:.2f}): {'met' if ratio <= goal else 'NOT met'}")
    if "grading" in results:
        speedup = results["grading"]["speedup"]
        lines.append(f"grading --jobs 2 / --jobs 1 throughput = {speedup:.2f}x")
    if "sanitizers" in results:
        figures = results["sanitizers"]
        lines.append(f"clean-control cycle, debug box / stock box = "
                     f"{figures['cycle_ratio_debug_vs_stock']:.2f}x")
        for box in SANITIZER_BOXES:
            added, goal = figures[box]["leak_check_added_s"], TARGETS["leak_check_s"][box]
            lines.append(f"{box}: leak check ({figures[box]['leak_check']}) adds {added:.2f} s "
                         f"per test (target <= {goal} s): {'met' if added <= goal else 'NOT met'}"
                         f"; clean control: {figures[box]['clean_runs_with_findings']} of "
                         f"{figures[box]['clean_runs']} runs with findings (target 0)")
    if "coverage" in results:
        ratio, goal = results["coverage"]["ratio"], TARGETS["coverage_cycle_ratio"]
        lines.append(f"llist cycle with coverage / without = {ratio:.2f}x (target <= {goal}x): "
                     f"{'met' if ratio <= goal else 'NOT met'}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--json", default=str(ROOT / ".harness" / "bench.json"))
    args = parser.parse_args()
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    results: dict[str, object] = {"machine": machine()}
    started = time.perf_counter()
    try:
        if "startup" in sections:
            bench_startup(results)
        if "cycle" in sections:
            bench_cycle(results, args.rounds)
        if "recovery" in sections:
            bench_recovery(results)
        if "grading" in sections:
            bench_grading(results)
        if "parser" in sections:
            bench_parser(results)
        if "cli" in sections:
            bench_cli(results)
        if "sanitizers" in sections:
            bench_sanitizers(results, args.rounds)
        if "coverage" in sections:
            bench_coverage(results, args.rounds)
        if "history" in sections:
            bench_history(results)
        if "reruns" in sections:
            bench_reruns(results, args.rounds)
        if "lane" in sections:
            bench_lane(results, args.rounds)
        if "matrix" in sections:
            bench_matrix(results, args.rounds)
    finally:
        # These need no bench VM (reruns and matrix use the checkout's own VMs).
        if set(sections) - {"parser", "cli", "history", "reruns", "lane", "matrix"}:
            destroy_bench_vms()
    results["summary"] = summary(results)
    print("\n".join(results["summary"]))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"(cycle figures: median of {args.rounds} rounds; bench took "
          f"{time.perf_counter() - started:.0f} s; JSON in {shlex.quote(args.json)})")
    return 0


def machine() -> dict[str, object]:
    import platform

    from harness import accel
    driver, _ = accel.choose_driver("auto")
    return {"cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
            * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "kernel": platform.release(),
            "vm_driver": driver}


if __name__ == "__main__":
    sys.exit(main())
