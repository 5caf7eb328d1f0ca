"""A large log read by several processes gives exactly the reports of one process.

The logs are cut into many small pieces (far smaller than a real run's) so that cuts land
beside every kind of report the corpus has: WARNINGs after their "cut here" line, follow-up
headers, caller-id logs whose titles read past the next report, a serial capture's CR lines.
Each report is compared whole: title, frames, lines and their numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.oops.corpus import corpus_files
from harness.oops.detect import Report, detect
from harness.oops.logtext import log_kind, plain_text
from harness.oops.scan import PIECE_CHARS, cut, detect_rendered, piece_count

LOGS = Path(__file__).parent / "logs"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "oops-corpus" / "syzkaller-linux"
ROOT = Path(__file__).resolve().parents[2]


def _whole(report: Report) -> str:
    return json.dumps(report.to_dict(), default=str)


def _concatenated() -> bytes:
    files = corpus_files(CORPUS) if CORPUS.is_dir() else []
    files += sorted(p for p in LOGS.iterdir() if p.is_file() and not p.name.endswith(".json"))
    return b"".join(path.read_bytes().split(b"\nREPORT:\n", 1)[0] + b"\n" for path in files)


@pytest.fixture(scope="module")
def big_log() -> bytes:
    return _concatenated()


def test_pieces_give_the_whole_logs_reports(big_log: bytes):
    text, _ = plain_text(big_log)
    pieces = cut(text, log_kind(text), 60)
    assert len(pieces) > 30, "the log should be cut in many places"
    want = [_whole(report) for report in detect(big_log)]
    got = detect_rendered(big_log, _whole, workers=2, pieces=60)
    assert len(got) == len(want) > 100
    differ = [(w, g) for w, g in zip(want, got, strict=True) if w != g]
    assert not differ, differ[:3]


def test_a_serial_capture_with_cr_lines_keeps_its_line_numbers(big_log: bytes):
    """Lone CRs add lines that keep the editor's line numbers: a piece reads them too."""
    serial = big_log.replace(b"\n", b"\r\n").replace(b"Call Trace:", b"\rCall Trace:")
    want = [_whole(report) for report in detect(serial)]
    got = detect_rendered(serial, _whole, workers=2, pieces=40)
    assert got == want


def test_kmsg_records_and_small_logs_are_read_in_one_piece():
    log = (LOGS / "null_exit.console").read_bytes()
    assert detect_rendered(log, _whole, workers=4) == [_whole(r) for r in detect(log)]
    records = b"4,1,2000000,-;BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    assert detect_rendered(records * 50, _whole, workers=2, pieces=10) == \
        [_whole(r) for r in detect(records * 50)]


def test_pieces_are_a_whole_number_a_worker_and_none_too_small():
    assert piece_count(1_000_000, 2) == 1
    assert piece_count(3 * PIECE_CHARS, 2) == 2
    assert piece_count(19 * PIECE_CHARS, 2) == 8
    assert piece_count(7 * PIECE_CHARS, 3) == 6
    assert piece_count(100 * PIECE_CHARS, 1) == 4


def test_a_log_without_a_report_start_is_one_piece():
    text = "\n".join(f"[{n:12.6f}] eth0: link up" for n in range(5000))
    assert len(cut(text, "console", 8)) == 1


def test_a_line_of_a_timestamp_alone_is_a_line_of_its_own():
    """A prefix with nothing after it (a log saved without trailing blanks) once took the next
    line into its message: every later line number was off by one, and a header glued there
    was read from the wrong line."""
    log = ("[   1.000000][   T17]\n"
           "[   1.000001][   T17] CPU: 1 PID: 17 Comm: kworker/1:0\n"
           "[   2.000000][   T17] BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
           "[   2.000001][   T17] RIP: 0010:crashy_null_write+0x5/0x20 [crashy]\n")
    [report] = detect(log)
    assert report.start_line == 3
    assert report.module_frame is not None and report.module_frame.line == 4


def test_the_command_reads_with_several_processes_alike(tmp_path: Path, big_log: bytes):
    log = tmp_path / "big.log"
    log.write_bytes(big_log * 3)

    def oops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", "oops", *args, str(log)],
                              capture_output=True, text=True, cwd=ROOT, check=False)

    one, two = oops("--json", "--jobs", "1"), oops("--json", "--jobs", "2")
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout and len(json.loads(two.stdout)) > 100
    assert oops("--jobs", "1").stdout == oops("--jobs", "2").stdout
    bad = oops("--jobs", "0")
    assert bad.returncode == 2 and "give 1 or more" in bad.stderr


def test_without_a_process_to_be_had_one_reads_it_all(big_log: bytes, monkeypatch):
    import multiprocessing.context

    def no_process(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkContext, "Pool", no_process)
    want = [_whole(report) for report in detect(big_log)]
    assert detect_rendered(big_log, _whole, workers=2, pieces=8) == want


def test_a_system_logs_pieces_are_read_as_system_lines(big_log: bytes):
    """journalctl -k's lines: every piece is read with the whole log's kind, which only its
    first lines tell."""
    lines = big_log.split(b"\n")
    journal = b"\n".join(b"Dec  5 21:36:%02d guest kernel: " % (n % 60) + line
                         for n, line in enumerate(lines))
    assert log_kind(plain_text(journal)[0]) == "system"
    want = [_whole(report) for report in detect(journal)]
    assert len(want) > 100
    assert detect_rendered(journal, _whole, workers=2, pieces=20) == want
