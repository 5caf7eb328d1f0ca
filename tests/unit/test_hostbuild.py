"""Where a module is built (host rootfs or guest) and how a saved VM is resumed, without a VM.

The real builds and the real resume are in tests/vm/test_fast_paths.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import cleanstate
from harness.build import (
    IN_GUEST,
    ON_HOST,
    Builder,
    HostBuildUnavailable,
    build_key,
    make_command,
)
from harness.cleanstate import ready_vm
from harness.errors import VMError
from harness.hostbuild import (
    CompileOutcome,
    RootfsBuilder,
    SandboxLimits,
    Toolchain,
    build_user,
    parse_toolchain,
    split_outputs,
)
from harness.transport import CommandResult

GUEST = Toolchain("6.1.0-56-amd64", "0c2e8643" * 8, "gcc (Debian 12.2.0-14+deb12u1) 12.2.0")


@dataclass
class ProbeTransport:
    """Answers the toolchain probe as a guest with ``toolchain`` would."""

    toolchain: Toolchain
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, **_: object) -> CommandResult:
        self.commands.append(command)
        t = self.toolchain
        return CommandResult(command, 0, f"{t.release}\n{t.symvers_sha256}\n{t.gcc}\n", "")


@dataclass
class FakeRootfs:
    toolchain_found: Toolchain
    missing: str | None = None

    def unavailable_reason(self) -> str | None:
        return self.missing

    def toolchain(self, release: str) -> Toolchain:
        return self.toolchain_found


def builder(mode: str, host: FakeRootfs | None) -> Builder:
    return Builder(ProbeTransport(GUEST), Path("/nonexistent"), mode=mode, host=host)  # type: ignore[arg-type]


def test_auto_builds_on_the_host_when_the_rootfs_matches_the_guest():
    b = builder("auto", FakeRootfs(GUEST))
    assert b.place_for(GUEST.release) == ON_HOST
    assert "same kernel build (6.1.0-56-amd64" in b.decision and "12.2.0" in b.decision


@pytest.mark.parametrize("host, reason", [
    (None, "a cloud box has no root filesystem"),
    (FakeRootfs(GUEST, missing="bubblewrap is not installed"), "bubblewrap is not installed"),
    (FakeRootfs(Toolchain(GUEST.release, "ffff" * 16, GUEST.gcc)), "Module.symvers sha256"),
    (FakeRootfs(Toolchain(GUEST.release, GUEST.symvers_sha256, "gcc 13")), "gcc"),
    (FakeRootfs(Toolchain("6.12.117-amd64", "-", GUEST.gcc)), "kernel"),
])
def test_auto_falls_back_to_the_guest_and_says_why(host, reason):
    b = builder("auto", host)
    assert b.place_for(GUEST.release) == IN_GUEST
    assert "in the guest" in b.decision and reason in b.decision


def test_host_mode_refuses_a_rootfs_that_does_not_match():
    b = builder("host", FakeRootfs(Toolchain(GUEST.release, "ffff" * 16, GUEST.gcc)))
    with pytest.raises(HostBuildUnavailable, match="Module.symvers"):
        b.place_for(GUEST.release)


def test_guest_mode_and_per_module_override():
    b = builder("guest", FakeRootfs(GUEST))
    assert b.place_for(GUEST.release) == IN_GUEST
    assert b.transport.commands == []  # no probe needed
    assert b.place_for(GUEST.release, mode="auto") == ON_HOST
    with pytest.raises(ValueError, match="auto, host, guest"):
        b.place_for(GUEST.release, mode="cloud")


def test_the_decision_is_probed_once_per_kernel():
    b = builder("auto", FakeRootfs(GUEST))
    for _ in range(3):
        b.place_for(GUEST.release)
    assert len(b.transport.commands) == 1


def test_toolchain_probe_output_is_parsed_and_compared():
    found = parse_toolchain("6.1.0-56-amd64\nabc\ngcc 12\n")
    assert found == Toolchain("6.1.0-56-amd64", "abc", "gcc 12")
    assert parse_toolchain("6.1.0-56-amd64\n") == Toolchain("6.1.0-56-amd64", "-", "-")
    assert found.differences(found) == []


def test_the_sandbox_is_read_only_offline_and_binds_the_guest_path(tmp_path):
    argv = RootfsBuilder(tmp_path / "rootfs", tmp_path / "work").sandbox_argv(
        tmp_path / "scratch", "/tmp/harness/hello-1234")
    text = " ".join(argv)
    assert f"--ro-bind {tmp_path / 'rootfs'} /" in text
    assert f"--bind {tmp_path / 'scratch'} /tmp/harness/hello-1234" in text
    assert "--unshare-all" in argv and "--clearenv" in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"


def test_make_command_names_the_release_outside_the_guest():
    assert "/lib/modules/6.1.0-56-amd64/build" in make_command("/tmp/x", release="6.1.0-56-amd64")
    assert "/lib/modules/$(uname -r)/build" in make_command("/tmp/x")


def test_a_missing_rootfs_or_bubblewrap_is_explained(tmp_path, monkeypatch):
    assert "harness box build" in RootfsBuilder(tmp_path, tmp_path).unavailable_reason()
    (tmp_path / ".harness-complete").write_text("d028b10cab26bdd0\n")
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "apt-get install bubblewrap" in RootfsBuilder(tmp_path, tmp_path).unavailable_reason()


@dataclass
class FakeVM:
    """Records what ready_vm asks of a VM."""

    state: Path
    has_domain: bool = True
    snapshot: bool = True
    running: bool = False
    restore_fails: bool = False
    quick_logins_built: bool = False  # the box has them already (harness.boxbuild, v6)
    driver: str = "qemu"
    calls: list[str] = field(default_factory=list)

    @property
    def settings(self) -> SimpleNamespace:
        box = SimpleNamespace(vagrant_box="harness/debian-12", recipe=SimpleNamespace(
            digest=lambda version: "recipe-digest"))
        return SimpleNamespace(box=box, driver=self.driver, memory=2048, cpus=2, direct_boot=None)

    @property
    def recorded(self) -> dict | None:
        return cleanstate.recorded_fingerprint(self)  # type: ignore[arg-type]

    def record(self, **changes: object) -> FakeVM:
        """As if an earlier run had made this VM (with ``changes`` to its settings)."""
        cleanstate.record_fingerprint(self)  # type: ignore[arg-type]
        data = {**json.loads((self.state / cleanstate.FINGERPRINT_FILE).read_text()), **changes}
        (self.state / cleanstate.FINGERPRINT_FILE).write_text(json.dumps(data))
        return self

    @property
    def domain(self) -> SimpleNamespace:
        return SimpleNamespace(id="uuid" if self.has_domain else None)

    def has_snapshot(self) -> bool:
        return self.snapshot

    def is_running(self) -> bool:
        return self.running

    def say(self, text: str) -> None:
        self.calls.append("say: " + text)

    def restore_snapshot(self, archive_as: str | None = None) -> float:
        self.calls.append("restore")
        if self.restore_fails:
            raise VMError("revert failed")
        self.running = True
        return 9.0

    def destroy(self) -> None:
        self.calls.append("destroy")
        self.has_domain = self.snapshot = self.running = False

    def up(self) -> None:
        self.calls.append("up")
        self.has_domain = self.running = True

    def wait_for_ssh(self, timeout: float = 180.0) -> None:
        self.calls.append("ssh")

    def close(self) -> None:
        pass

    def apply_network_policy(self) -> bool:
        self.calls.append("network policy")
        return False

    def save_snapshot(self) -> None:
        self.calls.append("snapshot")
        self.snapshot = True

    def transport(self) -> SimpleNamespace:
        """Commands the session runs in the guest before its snapshot, recorded by script."""
        def run(script: str, **_: object) -> SimpleNamespace:
            what = ("quick logins" if cleanstate.QUICK_LOGIN_FILE in script else
                    "guest: kmem events" if "events/kmem" in script else
                    "boot finished" if script == cleanstate.BOOT_FINISHED else "guest: " + script)
            self.calls.append(what)
            # a box built with quick logins answers "already" (no sshd restart, no new SSH)
            said = "already" if what == "quick logins" and self.quick_logins_built else ""
            result = SimpleNamespace(ok=True, stdout=said)
            result.check = lambda: result
            return result
        return SimpleNamespace(run=run)


# After a boot: SSH answers, the network policy, the boot let finish, the kmem events enabled
# once, quick logins (then SSH again), the snapshot.
BOOTED = ["ssh", "network policy", "boot finished", "guest: kmem events", "quick logins", "ssh",
          "snapshot"]


def actions(vm: FakeVM) -> list[str]:
    return [c for c in vm.calls if not c.startswith("say")]


def test_a_saved_vm_is_resumed_from_its_snapshot_not_booted(tmp_path):
    vm = FakeVM(tmp_path).record()
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["restore"]
    assert any("resuming the saved VM" in c for c in vm.calls)


def test_a_vm_made_with_other_settings_is_replaced(tmp_path):
    vm = FakeVM(tmp_path).record(driver="kvm")
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["destroy", "up", *BOOTED]
    assert vm.recorded == cleanstate.settings_fingerprint(vm)  # type: ignore[arg-type]


def test_a_snapshot_holding_other_things_is_replaced(tmp_path):
    vm = FakeVM(tmp_path).record(snapshot="kmem ledger 0000 events enabled; quick logins 00")
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["destroy", "up", *BOOTED]


def test_a_vm_that_cannot_be_resumed_is_made_anew(tmp_path):
    vm = FakeVM(tmp_path, restore_fails=True)
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["restore", "destroy", "up", *BOOTED]


def test_no_vm_yet_boots_one_and_takes_the_clean_snapshot(tmp_path):
    vm = FakeVM(tmp_path, has_domain=False, snapshot=False)
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["up", *BOOTED]


def test_a_box_built_with_quick_logins_needs_no_sshd_restart_before_its_snapshot(tmp_path):
    vm = FakeVM(tmp_path, has_domain=False, snapshot=False, quick_logins_built=True)
    ready_vm(vm)  # type: ignore[arg-type]
    assert actions(vm) == ["up", "ssh", "network policy", "boot finished", "guest: kmem events",
                           "quick logins", "snapshot"]


def test_the_run_summary_counts_where_builds_ran():
    b = builder("auto", FakeRootfs(GUEST))
    assert b.summary() is None
    b.place_for(GUEST.release)
    b.counts.update({ON_HOST: 3, "reused": 2})
    line = b.summary()
    assert line.startswith("module builds: 3 on the host, in the box's root filesystem")
    assert "2 reused from identical earlier builds" in line and "same kernel build" in line


def test_the_build_cache_gives_back_what_it_stored_and_nothing_when_a_copy_is_gone(tmp_path):
    from harness.build import BuildCache, BuildResult, Diagnostic

    cache = BuildCache(tmp_path)
    warning = Diagnostic("hello.c", 3, 5, "warning", "unused variable 'x'")
    result = BuildResult(Path("hello"), "/tmp/hello", "6.1.0", 0, "log text", [warning],
                         seconds=1.5, where=ON_HOST)
    outcome = CompileOutcome(0, "log text", {"sub/my-mod.ko": b"ELF"},
                             {"sub/my-mod.gcno": b"oncg"})
    local, notes = cache.store("k1", result, outcome)
    assert local == {"my_mod": tmp_path / "k1" / "my-mod.ko"}
    assert notes == {"sub/my-mod.gcno": tmp_path / "k1" / "gcno" / "sub" / "my-mod.gcno"}
    loaded = cache.load("k1")
    assert loaded is not None
    assert (loaded.exit_status, loaded.log, loaded.where) == (0, "log text", ON_HOST)
    assert loaded.diagnostics == [warning]
    assert loaded.ko_files == {"sub/my-mod.ko": tmp_path / "k1" / "my-mod.ko"}
    assert loaded.gcno_files == notes
    assert cache.load("other") is None
    notes["sub/my-mod.gcno"].unlink()
    assert cache.load("k1") is None  # a coverage run needs its notes as much as the .ko
    cache.store("k1", result, outcome)
    (tmp_path / "k1" / "my-mod.ko").unlink()
    assert cache.load("k1") is None


def test_build_outputs_are_split_into_modules_and_gcov_notes():
    ko, notes = split_outputs({"a.ko": b"1", "sub/b.ko": b"2", "a.gcno": b"3"})
    assert ko == {"a.ko": b"1", "sub/b.ko": b"2"} and notes == {"a.gcno": b"3"}


def test_profiling_is_a_make_variable_and_the_build_folder_part_of_the_build_key():
    # kbuild's M= decides the outcome (a folder it refuses fails; objects carry the folder),
    # so identical sources in another folder are another build, profiled or not.
    assert make_command("/tmp/x", profile=True).endswith(" GCOV_PROFILE=y modules 2>&1")
    assert "GCOV" not in make_command("/tmp/x")
    plain = build_key("d", "6.1", "", "/tmp/harness/a-1")
    profiled = build_key("d", "6.1", "", "/tmp/harness/a-1", profile=True)
    elsewhere = build_key("d", "6.1", "", "/tmp/harness/b-2")
    assert len({plain, profiled, elsewhere,
                build_key("d", "6.1", "", "/tmp/harness/b-2", profile=True)}) == 4
    assert profiled == build_key("d", "6.1", "", "/tmp/harness/a-1", profile=True)




def test_builds_at_once_run_as_users_of_their_own(tmp_path):
    """Each concurrent build is a uid of its own (RLIMIT_NPROC counts a uid's processes), and
    a uid is handed on once its build has ended."""
    limits = SandboxLimits()
    with build_user(limits, tmp_path) as first, build_user(limits, tmp_path) as second:
        assert first == limits.first_uid and second == limits.first_uid - 1
    with build_user(limits, tmp_path) as again:
        assert again == first
