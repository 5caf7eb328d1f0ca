"""The host build's sandbox against hostile Makefiles, for real: bubblewrap in the box's kept
root filesystem, as `harness grade` runs a student's build. No VM; it needs the built box's
root filesystem (`harness box build`, which scripts/test.sh runs first)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.build import make_command
from harness.hostbuild import REJECTED, TIMED_OUT, RootfsBuilder, SandboxLimits, build_uids

# Every uid a build may run as (pgrep -u takes them comma-separated).
BUILD_UIDS = ",".join(map(str, build_uids(SandboxLimits())))

ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = "/tmp/harness/student-0000"
RELEASE_GLOB = "lib/modules/*/modules.order"
HELLO_C = """#include <linux/module.h>
static int __init h_init(void) { return 0; }
static void __exit h_exit(void) { }
module_init(h_init);
module_exit(h_exit);
MODULE_LICENSE("GPL");
"""


@pytest.fixture
def builder(box_sandbox: RootfsBuilder) -> RootfsBuilder:
    return box_sandbox


def release(builder: RootfsBuilder) -> str:
    return next(builder.rootfs.glob(RELEASE_GLOB)).parent.name


def student(tmp_path: Path, makefile_extra: str) -> Path:
    folder = tmp_path / "student"
    folder.mkdir(parents=True)
    (folder / "evil.c").write_text(HELLO_C)
    (folder / "Makefile").write_text(f"obj-m += evil.o\n{makefile_extra}\n")
    return folder


def build(builder: RootfsBuilder, folder: Path, timeout: float = 120.0):
    return builder.compile(folder, GUEST_DIR, make_command(GUEST_DIR, release=release(builder)),
                           timeout, "time_limits.build_s")


def build_user_processes(limits: SandboxLimits | None = None) -> list[str]:
    uids = BUILD_UIDS if limits is None else ",".join(map(str, build_uids(limits)))
    found = subprocess.run(["pgrep", "-a", "-u", uids], capture_output=True, text=True)
    return found.stdout.splitlines()


def build_user_processes_gone(limits: SandboxLimits | None = None,
                              deadline_s: float = 10.0) -> list[str]:
    """The build users' processes once they are gone, or those still there at the deadline:
    a SIGKILL is delivered at once, but the kernel reaps a killed process tree a moment
    later on a loaded machine."""
    end = time.monotonic() + deadline_s
    while (left := build_user_processes(limits)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


def test_an_honest_module_builds(builder, tmp_path):
    outcome = build(builder, student(tmp_path, ""))
    assert outcome.exit_status == 0, outcome.log
    assert list(outcome.ko_files) == ["evil.ko"]
    assert outcome.ko_files["evil.ko"][:4] == b"\x7fELF"


def test_the_build_only_gets_cpu_nobody_else_wants(builder, tmp_path):
    outcome = build(builder, student(tmp_path, "$(info POLICY: $(shell chrt -p $$$$))"))
    assert "scheduling policy: SCHED_IDLE" in outcome.log


def test_an_interrupted_build_leaves_nothing_running(builder, tmp_path):
    def interrupt(signum, frame):
        raise TimeoutError("interrupted from outside")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 3)
    try:
        with pytest.raises(TimeoutError):
            build(builder, student(tmp_path, "$(shell (yes >/dev/null &); sleep 600)"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert build_user_processes_gone() == []


def test_a_link_to_a_host_file_is_refused_and_named(builder, tmp_path):
    secret = tmp_path / "grader-secret.txt"
    secret.write_text("the grader's secret\n")
    # The link is made inside the sandbox; resolved on the host it would read the secret.
    outcome = build(builder, student(tmp_path, f"$(shell ln -sf {secret} $(src)/zz.ko)"))
    assert outcome.exit_status == REJECTED
    assert "build output zz.ko is a symbolic link: only regular files are taken" in outcome.log
    assert outcome.ko_files == {}
    assert "the grader's secret" not in outcome.log


def test_host_files_are_not_visible_inside(builder, tmp_path):
    secret = tmp_path / "grader-secret.txt"
    secret.write_text("the grader's secret\n")
    outcome = build(builder, student(
        tmp_path, f"$(info READ: $(shell cat {secret} {ROOT / 'README.md'} 2>&1 | head -c 300))"))
    assert f"cat: {secret}: No such file or directory" in outcome.log
    assert f"cat: {ROOT / 'README.md'}: No such file or directory" in outcome.log
    assert "the grader's secret" not in outcome.log
    assert "Prove Linux kernel modules work" not in outcome.log


def test_cpu_burners_are_killed_when_the_build_ends(builder, tmp_path):
    # Detached, so make does not wait for them: only the sandbox's cleanup can stop them.
    outcome = build(builder, student(
        tmp_path, "$(shell for i in 1 2 3; do (yes >/dev/null 2>&1 &); done)"))
    assert outcome.exit_status == 0, outcome.log
    assert build_user_processes_gone() == []


def test_a_build_that_never_ends_stops_at_the_time_limit(builder, tmp_path):
    started = time.monotonic()
    outcome = build(builder, student(tmp_path, "$(shell sleep 600)"), timeout=5)
    assert time.monotonic() - started < 30
    assert outcome.exit_status == TIMED_OUT
    assert "build stopped after 5 s (time_limits.build_s)" in outcome.log
    assert build_user_processes_gone() == []


def test_a_fork_bomb_hits_the_process_limit(builder, tmp_path):
    started = time.monotonic()
    outcome = build(builder, student(
        tmp_path, "$(shell for i in $$(seq 1000); do sleep 60 >/dev/null 2>&1 & done)"))
    # The bomb starves only its own build: it fails, quickly, and nothing is left running.
    assert outcome.exit_status != 0
    assert "Cannot fork" in outcome.log or "Resource temporarily unavailable" in outcome.log
    assert time.monotonic() - started < 60
    assert build_user_processes_gone() == []


def test_filling_the_disk_stops_at_the_scratch_size(builder, tmp_path):
    before = _free_bytes(builder.work_root)
    outcome = build(builder, student(
        tmp_path, "$(info WROTE: $(shell for i in 1 2 3 4; do dd if=/dev/zero of=$(src)/fill$$i "
                  "bs=1M count=200 2>&1 | tail -1; done))"))
    assert "No space left on device" in outcome.log
    # Nothing of it landed on the host's disk (the scratch space is a sized tmpfs).
    assert before - _free_bytes(builder.work_root) < 100 << 20


def test_a_huge_single_file_hits_the_file_size_limit(builder, tmp_path):
    outcome = build(builder, student(
        tmp_path, "$(info WROTE: $(shell dd if=/dev/zero of=$(src)/fill bs=1M count=400 2>&1"
                  " | tail -1))"))
    assert "File size limit exceeded" in outcome.log


def test_no_network_inside(builder, tmp_path):
    outcome = build(builder, student(
        tmp_path, "$(info NET: $(shell tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '))"))
    assert "NET: lo\n" in outcome.log  # loopback only


def _free_bytes(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path).free


def test_one_students_process_hog_does_not_fail_another_students_build(builder, tmp_path):
    """Two graders' workers build at once (`harness grade --jobs 2`): a build that holds every
    process it may have must not leave the other build without any."""
    import threading

    hog_folder = student(tmp_path / "hog", "$(shell for i in $$(seq 1000); do "
                                           "(sleep 30 >/dev/null 2>&1 &); done; sleep 25)")
    # uids of their own, so that the other sandbox tests (run beside this one by xdist), which
    # check that no build uid has processes left, do not see the hog's
    limits = SandboxLimits(first_uid=SandboxLimits().first_uid - 100)
    first = RootfsBuilder(builder.rootfs, tmp_path / "first-worker", limits)
    other = RootfsBuilder(builder.rootfs, tmp_path / "other-worker", limits)
    hog = threading.Thread(target=build, args=(first, hog_folder), daemon=True)
    hog.start()
    try:
        time.sleep(8)  # the hog has taken its processes by now
        outcome = build(other, student(tmp_path / "honest", ""))
        assert outcome.exit_status == 0, outcome.log[-2000:]
        assert list(outcome.ko_files) == ["evil.ko"]
    finally:
        hog.join(timeout=120)
    assert build_user_processes_gone(limits) == []


def test_the_kernel_kills_a_builds_processes_first_when_memory_runs_out(builder, tmp_path):
    outcome = build(builder, student(
        tmp_path, "$(info OOM: $(shell cat /proc/self/oom_score_adj))"))
    assert "OOM: 1000\n" in outcome.log


def test_the_sandboxes_hold_none_of_the_graders_environment(builder, tmp_path, monkeypatch):
    """bubblewrap's own process is pid 1 inside and its environ is readable there: it must
    be started with none of the grader's variables, not only give the command none."""
    monkeypatch.setenv("HARNESS_TEST_SECRET", "grader-secret-7f3c")
    seen = builder.run_tool(tmp_path, ["sh", "-c", "cat /proc/1/environ; env"])
    assert "grader-secret-7f3c" not in seen
    outcome = build(builder, student(
        tmp_path, "$(info ENV: $(shell cat /proc/1/environ /proc/self/environ | tr '\\0' ' '))"))
    assert "ENV: " in outcome.log and "grader-secret-7f3c" not in outcome.log
