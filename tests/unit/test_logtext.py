"""Kernel logs as the system keeps them: the same crash gives the same report whether it is read
from the serial console, dmesg, /dev/kmsg, journalctl or a syslog file.

Each captured log of tests/unit/logs (and, when ../shared is there, each log of syzkaller's
corpus) is rendered again in every format of :data:`FORMATS`, from its messages; the reports
must be those of the plain ``dmesg`` rendering. No rule was fitted to these renderings: they
check the reading of line prefixes, not the titles.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.oops.corpus import corpus_files, load_case, part_of
from harness.oops.detect import detect
from harness.oops.logtext import LOG_FORMATS, read_log, strip_prefix

LOGS = Path(__file__).parent / "logs"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "oops-corpus" / "syzkaller-linux"
LOG_FILES = sorted(p for p in LOGS.iterdir() if p.is_file() and not p.name.endswith(".json"))

_BOOT = datetime.datetime(2026, 11, 27, 5, 59, 1)


def _uptime(index: int) -> float:
    return 12.345678 + index * 0.000137


def _wall(index: int) -> datetime.datetime:
    return _BOOT + datetime.timedelta(seconds=_uptime(index))


# How each tool prints the kernel's line number ``i`` with message ``m``.
FORMATS: dict[str, Callable[[int, str], str]] = {
    "dmesg": lambda i, m: f"[{_uptime(i):12.6f}] {m}",
    "dmesg -r": lambda i, m: f"<4>[{_uptime(i):12.6f}] {m}",
    "dmesg -T": lambda i, m: f"[{_wall(i):%a %b %e %H:%M:%S %Y}] {m}",
    "dmesg -x": lambda i, m: f"kern  :err   : [{_uptime(i):12.6f}] {m}",
    "dmesg -H": lambda i, m: (f"[{_wall(i):%b%d %H:%M}] {m}" if i % 50 == 0
                              else f"[  +{0.000137:.6f}] {m}"),
    "dmesg -d": lambda i, m: f"[{_uptime(i):12.6f} <{0.000137:12.6f}>] {m}",
    "journalctl -k": lambda i, m: f"{_wall(i):%b %e %H:%M:%S} guest kernel: {m}",
    "journalctl -k -o short-iso":
        lambda i, m: f"{_wall(i):%Y-%m-%dT%H:%M:%S}+0000 guest kernel: {m}",
    "journalctl -k -o short-precise":
        lambda i, m: f"{_wall(i):%b %e %H:%M:%S.%f} guest kernel: {m}",
    "journalctl -k -o short-monotonic": lambda i, m: f"[{_uptime(i):12.6f}] guest kernel: {m}",
    "/var/log/kern.log": lambda i, m: f"{_wall(i):%b %e %H:%M:%S} guest kernel: "
                                      f"[{_uptime(i):12.6f}] {m}",
    "rsyslog RFC 3339": lambda i, m: f"{_wall(i):%Y-%m-%dT%H:%M:%S.%f}+00:00 guest kernel: "
                                     f"[{_uptime(i):12.6f}] {m}",
    "/dev/kmsg": lambda i, m: f"4,{i},{int(_uptime(i) * 1e6)},-;{m}",
    "serial console, CR LF": lambda i, m: f"[{_uptime(i):12.6f}] {m}\r",
}


def render(messages: list[str], fmt: str) -> str:
    return "\n".join(FORMATS[fmt](index, message) for index, message in enumerate(messages))


def messages_of(log: bytes) -> list[str]:
    """The messages of a log, every prefix taken off (a message glued after another's text
    keeps only its own part)."""
    text = log.decode("utf-8", errors="replace").replace("\r", "")
    return [strip_prefix(line).rstrip() for line in text.split("\n")]


def _reports(log: str | bytes) -> list[tuple[str, str | None]]:
    return [(r.title, str(r.module_frame) if r.module_frame else None) for r in detect(log)]


@pytest.mark.parametrize(("line", "message"), [
    ("Nov 27 05:59:01 guest kernel: BUG: x", "BUG: x"),
    ("Nov  7 05:59:01 guest kernel: [   12.345678] BUG: x", "BUG: x"),
    ("Nov 27 05:59:01.123456 guest kernel: BUG: x", "BUG: x"),
    ("2026-11-27T05:59:01+0000 guest kernel: BUG: x", "BUG: x"),
    ("2026-11-27T05:59:01.123456+00:00 guest kernel: [   12.345678] BUG: x", "BUG: x"),
    ("Fri 2026-11-27 05:59:01 UTC guest kernel: BUG: x", "BUG: x"),
    ("[   12.345678] guest kernel: BUG: x", "BUG: x"),
    ("[Fri Nov 27 05:59:01 2026] BUG: x", "BUG: x"),
    ("kern  :err   : [   12.345678] BUG: x", "BUG: x"),
    ("kern  :warn  : BUG: x", "BUG: x"),
    ("[Nov27 05:59] BUG: x", "BUG: x"),
    ("[  +0.000137] BUG: x", "BUG: x"),
    ("[   12.345678 <    0.000137>] BUG: x", "BUG: x"),
])
def test_a_system_logs_prefix_is_taken_off(line: str, message: str):
    # The prefix is known from the log's first lines: a log of one line is one.
    assert read_log(line).texts == [message]
    assert strip_prefix(line) == message


def test_every_row_of_the_format_table_is_rendered_here():
    """Each row of LOG_FORMATS has a rendering in FORMATS, so the tests below cover it."""
    lines = [render_one(0, "BUG: x") for render_one in FORMATS.values()]
    for name, pattern in LOG_FORMATS:
        assert any(re.match(pattern, line) for line in lines), name
    for fmt in FORMATS:
        assert [text for text in read_log(render(["BUG: x"], fmt)).texts if text] == ["BUG: x"]


def test_other_programs_lines_in_a_system_log_are_no_crash():
    """journalctl without -k, /var/log/syslog: only the kernel's lines can hold a report."""
    log = "\n".join([
        "Nov 27 05:59:01 guest systemd[1]: Starting WARNING: a unit's own words",
        "Nov 27 05:59:02 guest myapp[812]: BUG: the program's message, not the kernel's",
        "Nov 27 05:59:03 guest kernel: hello: loading out-of-tree module taints kernel.",
    ])
    assert detect(log) == []


def test_a_kernel_crash_among_other_programs_lines_is_found():
    log = "\n".join([
        "Nov 27 05:59:01 guest systemd[1]: Started session 3 of user vagrant.",
        "Nov 27 05:59:02 guest kernel: ------------[ cut here ]------------",
        "Nov 27 05:59:02 guest kernel: WARNING: CPU: 0 PID: 812 at crashy.c:40 "
        "crashy_init+0x1e/0x1000 [crashy]",
        "Nov 27 05:59:02 guest sshd[700]: Accepted publickey for vagrant",
        "Nov 27 05:59:02 guest kernel: RIP: 0010:crashy_init+0x1e/0x1000 [crashy]",
        "Nov 27 05:59:02 guest kernel: Call Trace:",
        "Nov 27 05:59:02 guest kernel:  <TASK>",
        "Nov 27 05:59:02 guest kernel:  do_one_initcall+0x5f/0x300",
        "Nov 27 05:59:02 guest kernel: ---[ end trace 0000000000000000 ]---",
    ])
    assert _reports(log) == [("WARNING in crashy_init", "crashy_init+0x1e/0x1000 [crashy]")]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "dmesg"])
def test_the_projects_logs_give_the_same_reports_in_every_format(fmt: str):
    """This project's captured logs (its modules' crashes, the stock box's boot)."""
    differ = []
    for path in LOG_FILES:
        messages = messages_of(path.read_bytes())
        want = _reports(render(messages, "dmesg"))
        got = _reports(render(messages, fmt))
        if got != want:
            differ.append(f"{path.name}: {want} -> {got}")
    assert not differ, "\n".join(differ)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/oops-corpus is not beside the checkout")
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "dmesg"])
def test_the_corpus_gives_the_same_titles_in_every_format(fmt: str, capsys):
    """Every corpus log rendered in the format: the same first title as in plain dmesg, on
    both parts of the split."""
    agree = {"tune": [0, 0], "held-out": [0, 0]}
    differ = []
    for path in corpus_files(CORPUS):
        messages = messages_of(load_case(path).log)
        want = [title for title, _ in _reports(render(messages, "dmesg"))][:1]
        got = [title for title, _ in _reports(render(messages, fmt))][:1]
        counts = agree[part_of(path.name)]
        counts[0] += got == want
        counts[1] += 1
        if got != want:
            differ.append(f"{path.name}: {want} -> {got}")
    with capsys.disabled():
        print(f"\n{fmt}: " + ", ".join(f"{part} {ok}/{total}"
                                         for part, (ok, total) in agree.items()))
    assert not differ, "\n".join(differ)


def test_line_numbers_are_the_files_whatever_its_line_ends():
    """A serial capture ends the kernel's lines in CR LF, systemd's in CR CR LF, and redraws a
    progress line after a lone CR: the report still names the line an editor shows."""
    log = ("[   1.000000] Booting\r\n"
           "[  OK  ] Started udev\r\r\n"
           "\x1b[K[ *  ] A start job is running\r\x1b[K[**  ] A start job is running\r\r\n"
           "[   2.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000\r\n"
           "[   2.000001] RIP: 0010:crashy_null_write+0x5/0x20 [crashy]\r\n")
    [report] = detect(log)
    assert (report.start_line, report.title) == (
        4, "BUG: unable to handle kernel NULL pointer dereference in crashy_null_write")
    assert report.module_frame is not None and report.module_frame.line == 5

