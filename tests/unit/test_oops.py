"""The detector on logs captured from this project's own faulty modules in the guest, on
hand-made edge cases, and (when ../shared is there) on syzkaller's corpus: every captured log
and every corpus log is a test case of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.oops.corpus import corpus_files, first_title, load_case, measure, part_of
from harness.oops.detect import Report, detect
from harness.oops.logtext import parse_log
from harness.oops.patterns import HEADER_ANCHORS, HEADER_WORDS

LOGS = Path(__file__).parent / "logs"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "oops-corpus" / "syzkaller-linux"

EXPECTED_SUFFIX = ".expected.json"
LOG_FILES = sorted(p for p in LOGS.iterdir()
                   if p.is_file() and not p.name.endswith(EXPECTED_SUFFIX))


def _outcome(reports: list[Report]) -> list[dict[str, object]]:
    return [{"title": r.title, "module_frame": str(r.module_frame) if r.module_frame else None,
             "corrupted": r.corrupted} for r in reports]


@pytest.mark.parametrize("path", LOG_FILES, ids=lambda p: p.name)
def test_captured_log(path: Path, request: pytest.FixtureRequest):
    """Each log captured here against its own expected reports, kept beside it in
    NAME.expected.json (``--update-expected`` rewrites them after an intended change): the
    stock box's boot dmesg (no report), serial consoles of this project's faulty modules
    (modules/crashy on the stock box, tests/vm/modules/planted on the debug box), one with the
    debug box's own boot in it (an RCU stall in ACPI under KASAN and TCG)."""
    got = _outcome(detect(path.read_bytes()))
    expected_file = path.with_name(path.name + EXPECTED_SUFFIX)
    if request.config.getoption("--update-expected"):
        expected_file.write_text(json.dumps({"reports": got}, indent=2) + "\n")
    expected = json.loads(expected_file.read_text())["reports"]
    assert got == expected


def test_lockdep_points_at_the_offending_tasks_own_stack_not_the_chain():
    """The dependency chain shows where lock_b was once taken under lock_a (+0x1c); the
    module did the inverse acquisition at +0x50, which its stack after "stack backtrace:"
    shows."""
    report = detect((LOGS / "lockdep_abba.console").read_text())[0]
    assert str(report.module_frame) == "abba_init+0x50/0x1000 [abba]"


def test_an_endless_loop_gives_both_watchdog_reports():
    titles = [r.title for r in detect((LOGS / "loop.console").read_text())]
    assert "BUG: soft lockup in crashy_spin_forever" in titles


def test_blog_report_from_kmsg_records_with_a_stale_rip_afterwards():
    log = "\n".join([
        "6,900,100,-;Hello World",
        "1,901,200,-;BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "1,902,201,-;#PF: supervisor write access in kernel mode",
        "4,903,202,-;Oops: 0002 [#1] PREEMPT SMP NOPTI",
        "4,904,203,-;RIP: 0010:hello_exit+0xe/0x1000 [hello]",
        "4,905,204,-;Call Trace:",
        "4,906,205,-; <TASK>",
        "4,907,206,-; __do_sys_delete_module+0x1b9/0x330",
        "4,908,207,-; ? srso_return_thunk+0x5/0x10",
        "4,909,208,-; do_syscall_64+0x5d/0xb0",
        "4,910,209,-;---[ end trace 0000000000000000 ]---",
        "4,911,300,-;------------[ cut here ]------------",
        "4,912,301,-;WARNING: CPU: 1 PID: 1667 at /tmp/m/other.c:16 other_fn+0xe/0x15 [other]",
        "4,913,302,-;RIP: 0010:other_fn+0xe/0x15 [other]",
        "4,914,303,-;---[ end trace 0000000000000000 ]---",
        "4,915,304,-;RIP: 0010:hello_exit+0xe/0x1000 [hello]",
    ])
    first, second = detect(log)
    assert first.title == "BUG: unable to handle kernel NULL pointer dereference in hello_exit"
    assert (first.function, first.module, first.module_function) == ("hello_exit", "hello",
                                                                     "hello_exit")
    assert (first.start_line, first.end_line) == (2, 11)
    assert second.title == "WARNING in other_fn"
    assert second.module_function == "other_fn" and second.module == "other"
    assert second.start_line == 12  # the "cut here" line belongs to the report


def test_every_header_word_is_found_by_an_anchor():
    """The log is searched for the anchors only: a header word without one would never start
    a report."""
    missed = [word for word in HEADER_WORDS if not any(a in word for a in HEADER_ANCHORS)]
    assert missed == []


def test_words_alone_are_not_crashes():
    log = (
        "[    0.123456] Speculative Return Stack Overflow: WARNING: See "
        "https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation "
        "options.\n"
        "[    1.000000] hello: a BUG: in a user's message is not a report\n"
        "[    2.000000] systemd[1]: Started WARNING.service\n"
    )
    assert detect(log) == []


def test_console_prefixes_caller_ids_levels_and_carriage_returns():
    log = ("<4>[   12.345678][ T1234] ------------[ cut here ]------------\r\n"
           "<4>[   12.345679][ T1234] WARNING: CPU: 0 PID: 1234 at m.c:3 do_warn+0x5/0x10 [m]\r\n"
           "no prefix at all\r\n"
           "<4>[   12.345680][ T1234] RIP: 0010:do_warn+0x5/0x10 [m]\r\n")
    lines = parse_log(log)
    assert lines[1].text.startswith("WARNING: CPU: 0")
    assert lines[2].text == "no prefix at all"
    (report,) = detect(log)
    assert report.title == "WARNING in do_warn" and report.module == "m"


def test_panic_from_the_console_is_marked_panicked():
    log = ("[ 5.0] Kernel panic - not syncing: crashy: deliberate panic\n"
           "[ 5.1] CPU: 0 PID: 1 Comm: insmod\n"
           "[ 5.2] Call Trace:\n"
           "[ 5.3]  crashy_init+0x91/0x1000 [crashy]\n"
           "[ 5.4] ---[ end Kernel panic - not syncing: crashy: deliberate panic ]---\n")
    (report,) = detect(log)
    assert report.title == "kernel panic: crashy: deliberate panic"
    assert report.panicked and report.module_function == "crashy_init"


def test_ignored_titles_are_dropped():
    log = ("[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 noisy_fn+0x1/0x2\n"
           "[ 1.0] RIP: 0010:noisy_fn+0x1/0x2\n")
    assert detect(log, ignore=[r"WARNING in noisy_"]) == []


CORPUS_FILES = corpus_files(CORPUS) if CORPUS.is_dir() else []
DIFFERENCES_FILE = Path(__file__).parent / "oops_corpus_differences.json"
NO_REPORT = "(no report)"


@dataclass
class CorpusDifferences:
    known: dict[str, dict]  # as recorded in DIFFERENCES_FILE
    seen: dict[str, dict | None]  # with --update-expected: what each case saw (None: agrees)


@pytest.fixture(scope="module")
def corpus_differences(request: pytest.FixtureRequest) -> Iterator[CorpusDifferences]:
    """Where the detector's first title departs from the corpus's TITLE/ALT (those stay the
    truth), as recorded with the reason in oops_corpus_differences.json. With
    ``--update-expected`` the cases record what they see and the file is rewritten."""
    known = json.loads(DIFFERENCES_FILE.read_text()) if DIFFERENCES_FILE.exists() else {}
    differences = CorpusDifferences(known, {})
    yield differences
    if request.config.getoption("--update-expected") and differences.seen:
        merged = {name: entry for name, entry in known.items() if name not in differences.seen}
        merged.update({name: entry for name, entry in differences.seen.items() if entry})
        ordered = dict(sorted(merged.items(), key=lambda item: (len(item[0]), item[0])))
        DIFFERENCES_FILE.write_text(json.dumps(ordered, indent=2) + "\n")


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{part_of(p.name)}-{p.name}")
def test_corpus_log(path: Path, corpus_differences: CorpusDifferences,
                    request: pytest.FixtureRequest):
    """One corpus log: its first report's title is the corpus's TITLE (or an ALT), or it
    differs exactly as recorded in oops_corpus_differences.json."""
    case = load_case(path)
    got = first_title(case.log) or NO_REPORT
    agrees = case.agrees(None if got == NO_REPORT else got)
    recorded = corpus_differences.known.get(path.name)
    if request.config.getoption("--update-expected"):
        held_out = part_of(path.name) == "held-out"
        why = (recorded["why"] if recorded and recorded["got"] == got
               else "held out: not examined" if held_out else "new: not reviewed yet")
        corpus_differences.seen[path.name] = None if agrees else {
            "part": part_of(path.name), "expected": case.title or NO_REPORT, "got": got,
            "why": why}
        return
    if agrees:
        assert recorded is None, f"{path.name} now agrees with the corpus: --update-expected"
    else:
        assert recorded is not None, f"{path.name}: expected {case.title!r}, got {got!r}"
        assert recorded["got"] == got, \
            f"{path.name}: the recorded difference was {recorded['got']!r}, now {got!r}"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/oops-corpus is not beside the checkout")
def test_syzkaller_corpus_agreement(capsys):
    """Figures for each part of the corpus split. The tune part is what the rules were fitted
    on; the held-out part is reported beside it, so that a rule which only memorises a file
    shows."""
    measure(CORPUS)  # warm: compiling the patterns is not parsing
    parts = measure(CORPUS)
    with capsys.disabled():
        print()
        for part, figures in parts.items():
            print(f"oops corpus, {part}: {figures.figures()}")
    tune, held_out = parts["tune"], parts["held-out"]
    # The targets on both parts; the held-out exact-title floor a little under its figure
    # (99.2 %), so that losing a held-out title shows.
    assert tune.rate(tune.detection) >= 0.995 and tune.rate(tune.exact) >= 0.80
    assert held_out.rate(held_out.detection) >= 0.995 and held_out.rate(held_out.exact) >= 0.95


def test_a_header_glued_to_the_previous_message_is_found():
    """A message printed without a newline, then a crash: the console puts both on one line."""
    log = "\n".join([
        "[   76.470001] syz-executor: vmalloc error: size 34359738352, page order 0, "
        "allocation failure: 34359738352 bytes[   76.471107] BUG: unable to handle kernel "
        "paging request at ffffc90000a3a000",
        "[   76.471120] #PF: supervisor write access in kernel mode",
        "[   76.471200] RIP: 0010:llist_fill+0x2e/0x60 [llist]",
        "[   76.471300] Call Trace:",
        "[   76.471310]  <TASK>",
        "[   76.471320]  llist_init+0x40/0x1000 [llist]",
        "[   76.471330]  do_one_initcall+0x5f/0x300",
    ])
    reports = detect(log)
    assert [r.title for r in reports] == ["BUG: unable to handle kernel paging request in "
                                          "llist_fill"]
    assert reports[0].start_line == 1


@pytest.mark.parametrize(("header", "rip", "title"), [
    ("WARNING: fs/ext4/xattr.c:1058 at 0x0, CPU#0: syz.0.17/5982",
     "ext4_xattr_inode_update_ref+0x3f1/0x4d0", "WARNING in ext4_xattr_inode_update_ref"),
    ("WARNING: [time_after(jiffies, timeout)] io_uring/io_uring.c:3026 at "
     "io_ring_exit_work+0x44c/0xbc0, CPU#0: kworker/u8:0/10040", "io_ring_exit_work+0x44c/0xbc0",
     "WARNING in io_ring_exit_work"),
])
def test_the_warning_header_of_recent_kernels(header, rip, title):
    log = "\n".join([
        "------------[ cut here ]------------", header,
        "Modules linked in:",
        f"RIP: 0010:{rip}",
        "Call Trace:", " <TASK>", " ext4_xattr_set_entry+0x10f/0x1d0", " </TASK>",
        "---[ end trace 0000000000000000 ]---"])
    assert [r.title for r in detect(log)] == [title]


@pytest.mark.parametrize(("log", "title"), [
    # A hung task whose name is garbled bytes: the task part of the header is free-form.
    ("INFO: task \udcff\udcfe\x01syz:5123 blocked for more than 143 seconds.\n"
     "Call Trace:\n __schedule+0x1/0x2\n schedule+0x1/0x2\n p9_fd_close+0x1/0x2\n"
     " p9_client_destroy+0x1/0x2\n", "INFO: task hung in p9_fd_close"),
    ("Unable to handle kernel access to user memory outside uaccess routines at virtual "
     "address 0000000000000000\npc : schedule_tail+0x1/0x2\nCall trace:\n"
     " schedule_tail+0x1/0x2\n ret_from_fork+0x1/0x2\n",
     "BUG: unable to handle kernel access to user memory in schedule_tail"),
    ("unregister_netdevice: waiting for lo to become free. Usage count = 2\n",
     "unregister_netdevice: waiting for DEV to become free"),
    ("VFS: Close: file count is 0 (f_op=shm_file_operations)\n",
     "VFS: Close: file count is zero (use-after-free)"),
])
def test_formats_seen_on_kernels_nobody_tuned_for(log: str, title: str):
    assert [r.title for r in detect(log)] == [title]


@pytest.mark.parametrize(("log", "titles"), [
    # syzkaller's Linux table ends with the failures of the programs driving the guest.
    ("[   12.000001] SYZFAIL: SIGSEGV\n", ["SYZFAIL: SIGSEGV"]),
    ("SYZFATAL: executor 3 failed 11 times: read-only file system\n",
     ["SYZFATAL: executor NUM failed NUM times: read-only file system"]),
    ("panic: runtime error: index out of range [3] with length 3\n",
     ["panic: runtime error: index out of range [NUM] with length NUM"]),
    ("fatal error: unexpected signal during runtime execution\n", ["go runtime error"]),
    # Only at a message's start: a driver's own words, or a kernel function's name, are none.
    ("[   12.000001] mydev: fatal error: the firmware did not answer\n", []),
    ("[   12.000001] skbuff: skb_panic: text here\n", []),
    ("[   12.000001] ALSA fatal error: x\n", []),
])
def test_the_programs_driving_the_guest_fail_on_its_console(log: str, titles: list[str]):
    assert [r.title for r in detect(log)] == titles


def test_a_report_interleaved_with_another_task_reads_its_own_lines():
    """With caller ids, the lines of another task printing at the same time are not part of
    the report: its RIP and stack are the reporting task's."""
    log = "\n".join([
        "[   10.000001][ T100] general protection fault: 0000 [#1] SMP KASAN",
        "[   10.000002][ T200] BUG: KASAN: null-ptr-deref in other_fn+0x1/0x2",
        "[   10.000003][ T100] RIP: 0010:x25_connect+0x1/0x2",
        "[   10.000004][ T200] RIP: 0010:other_fn+0x1/0x2",
        "[   10.000005][ T100] Call Trace:",
        "[   10.000006][ T200] Call Trace:",
        "[   10.000007][ T100]  __sys_connect+0x1/0x2",
        "[   10.000008][ T200]  other_caller+0x1/0x2",
    ])
    assert detect(log)[0].title == "general protection fault in x25_connect"


@pytest.mark.parametrize("name", ["null_exit.console", "lockdep_abba.console",
                                  "kasan_uaf_read.console"])
def test_the_module_frame_is_one_of_the_reports_frames(name: str):
    """Symbolization finds the module frame among the report's frames by identity (the frames
    are read on first use, after the module frame): the same object, not an equal copy."""
    report = detect((LOGS / name).read_bytes())[0]
    assert report.module_frame is not None
    assert any(frame is report.module_frame for frame in report.frames)
