"""Large logs on every core: a log cut where reports begin, its pieces detected side by side.

``harness oops`` on a console log of many megabytes is bound by one CPU. The log is cut at
lines where a report begins whatever precedes it (a header that no earlier report can take as
its follow-up, see :func:`~harness.oops.detect.first_report_start`), so a piece's reports are
exactly the ones the whole log gives there. A worker process reads its piece plus the lines
that the piece's last report may still read past the cut (its end, its title's window), keeps
the reports whose header lies in the piece, and renders them; the pieces come back in order.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.oops.detect import MAX_TITLE_LINES, Report, detect_log, first_report_start
from harness.oops.logtext import SNIFFED_LINES, log_kind, parse, split_lines, without_codes

PIECE_CHARS = 2_000_000  # a smaller piece costs its worker more than it saves
PIECES_PER_WORKER = 4  # pieces differ in their reports' density: more than workers evens them
# Searched in turn after a target offset for a line to cut at: most logs have a report start
# in the first, a sparse one needs the second.
CUT_WINDOWS_LINES = (250, 4000)
# What a report above a cut may read below it: its window for a title, and the next line.
LOOKAHEAD_LINES = MAX_TITLE_LINES + 2


@dataclass(frozen=True)
class Piece:
    start: int  # offset in the text of its first line
    stop: int  # offset of the next piece's first line: its own reports have headers above it
    end: int  # where what its worker reads ends
    first_line: int  # index in the whole log of its first line


@dataclass(frozen=True)
class _Job:
    text: str
    numbers: list[int] | None
    kind: str
    pieces: list[Piece]
    render: Callable[[Report], str]


def default_workers() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the host's)."""
    return len(os.sched_getaffinity(0))


def detect_rendered(data: str | bytes, render: Callable[[Report], str],
                    workers: int | None = None, pieces: int | None = None) -> list[str]:
    """Every crash report of a log rendered by ``render``, in order, as :func:`detect` would
    find them, read by up to ``workers`` processes (default: every CPU this one may use) in
    ``pieces`` pieces (default: by the log's size). ``render`` runs in the workers: it turns
    a report into what is kept of it."""
    # Terminal codes are taken off each piece by its worker, not the whole log here first.
    text, numbers = split_lines(data)
    kind = log_kind(without_codes(text[:_after_lines(text, 0, SNIFFED_LINES)]))
    workers = default_workers() if workers is None else workers
    count = piece_count(len(text), workers) if pieces is None else pieces
    # /dev/kmsg records drop continuation lines, so a piece's lines would not be the text's.
    parts = cut(text, kind, count) if workers > 1 and count > 1 and kind != "kmsg" else []
    if len(parts) >= 2:
        job = _Job(text, numbers, kind, parts, render)
        # Forked workers inherit the job: the text is not copied through a pipe.
        context = multiprocessing.get_context("fork")
        try:
            pool = context.Pool(min(workers, len(parts)), initializer=_adopt, initargs=(job,))
        except OSError:  # no process to be had (a process limit): one reads it all
            pass
        else:
            with pool:
                rendered = pool.map(_render_piece, range(len(parts)), chunksize=1)
            return [row for rows in rendered for row in rows]
    return [render(report) for report in detect_log(parse(without_codes(text), numbers, kind))]


def piece_count(chars: int, workers: int) -> int:
    """Pieces for a log of ``chars`` characters: a whole number a worker, each at least
    :data:`PIECE_CHARS` (so that no worker waits for another's extra piece); 1 for a small log."""
    per_worker = min(PIECES_PER_WORKER, chars // (PIECE_CHARS * workers))
    return workers * per_worker if per_worker else max(1, min(workers, chars // PIECE_CHARS))


def cut(text: str, kind: str, count: int) -> list[Piece]:
    """``text`` in up to ``count`` pieces of about equal size, each starting where a report
    begins (one piece when no such line follows the targets)."""
    starts = [0]
    for number in range(1, count):
        target = max(len(text) * number // count, starts[-1] + 1)
        line = text.find("\n", target) + 1
        if line == 0:
            break
        for window in CUT_WINDOWS_LINES:
            window_end = _after_lines(text, line, window)
            report = first_report_start(parse(without_codes(text[line:window_end]), None, kind))
            if report is not None:
                starts.append(_after_lines(text, line, report, ends=False))
                break
    pieces = []
    first_line = 0
    for start, stop in zip(starts, [*starts[1:], len(text)], strict=True):
        end = len(text) if stop == len(text) else _after_lines(text, stop, LOOKAHEAD_LINES)
        pieces.append(Piece(start, stop, end, first_line))
        first_line += text.count("\n", start, stop)
    return pieces


def _after_lines(text: str, start: int, lines: int, ends: bool = True) -> int:
    """The offset ``lines`` lines on from ``start`` (a line's start): with ``ends``, where the
    last of them ends (its newline), else where the next line starts; the text's end at most."""
    position = start
    for _ in range(lines):
        newline = text.find("\n", position)
        if newline < 0:
            return len(text)
        position = newline + 1
    return position - 1 if ends and position > start else position


_JOB: _Job | None = None


def _adopt(job: _Job) -> None:
    global _JOB
    _JOB = job
    # A worker lives for one log and makes no reference cycles worth collecting: the cyclic
    # collector's passes over its hundreds of thousands of objects would be a tenth of its time.
    gc.disable()


def _render_piece(number: int) -> list[str]:
    job = _JOB
    assert job is not None, "a worker runs after _adopt"
    piece = job.pieces[number]
    text = job.text[piece.start:piece.end]
    lines = text.count("\n") + 1
    numbers: Sequence[int] = (job.numbers[piece.first_line:piece.first_line + lines]
                              if job.numbers is not None
                              else range(piece.first_line + 1, piece.first_line + lines + 1))
    last = piece.stop == len(job.text)  # it owns every report to the log's end
    owned = None if last else job.text.count("\n", piece.start, piece.stop)
    log = parse(without_codes(text), numbers, job.kind)
    return [job.render(report) for report in detect_log(log, owned)]
