"""Measuring the detector against a corpus of real logs with expected titles (syzkaller's format).

Each corpus file: ``KEY: value`` header lines, a blank line, then the raw log. ``TITLE:`` is the
expected title of the first report (absent or empty: no crash), ``ALT:`` alternative titles,
``CORRUPTED: Y`` a garbled report. Some files end with ``REPORT:`` and the expected report text,
which is not part of the log.

The corpus is split for generalisation discipline (:func:`part_of`): rules are fitted on the
"tune" part only, and the "held-out" part's figures say how they fare on logs nobody looked at.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.oops.detect import detect

PARTS = ("tune", "held-out")


def part_of(name: str) -> str:
    """A third of the files, chosen by a hash of the name (stable, independent of content),
    is held out."""
    digest = hashlib.sha256(f"harness-corpus-split:{name}".encode()).digest()
    return "held-out" if digest[0] % 3 == 0 else "tune"


@dataclass
class CorpusCase:
    path: Path
    title: str | None
    alt: list[str]
    corrupted: bool
    log: bytes

    def agrees(self, got: str | None) -> bool:
        return got == self.title or (got is not None and got in self.alt)


@dataclass
class Agreement:
    cases: int = 0
    detection: int = 0  # crash / no crash agrees
    exact: int = 0  # the same title as TITLE
    title_or_alt: int = 0  # TITLE or one of the ALT titles
    seconds: float = 0.0
    megabytes: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    def add(self, case: CorpusCase, got: str | None, seconds: float) -> None:
        self.cases += 1
        self.seconds += seconds
        self.megabytes += len(case.log) / 1e6
        self.detection += (got is None) == (case.title is None)
        self.exact += got == case.title
        if case.agrees(got):
            self.title_or_alt += 1
        else:
            self.mismatches.append(f"{case.path.name}: expected {case.title!r}, got {got!r}")

    def rate(self, count: int) -> float:
        return count / max(self.cases, 1)

    @property
    def speed(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0

    def figures(self) -> str:
        return (f"{self.cases} logs: detection {100 * self.rate(self.detection):.1f}%, exact "
                f"title {100 * self.rate(self.exact):.1f}%, title or ALT "
                f"{100 * self.rate(self.title_or_alt):.1f}%; {self.megabytes:.1f} MB in "
                f"{self.seconds:.2f} s = {self.speed:.1f} MB/s")


def load_case(path: Path) -> CorpusCase:
    data = path.read_bytes().replace(b"\r", b"")  # as syzkaller's own test reads them
    header, _, log = data.partition(b"\n\n")
    # An expected report may follow the log, after an empty line and "REPORT:".
    log = log.split(b"\n\nREPORT:\n", 1)[0]
    title, alt, corrupted = None, [], False
    for line in header.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "TITLE":
            title = value or None  # an empty title: no report
        elif key == "ALT":
            alt.append(value)
        elif key == "CORRUPTED":
            corrupted = value == "Y"
    return CorpusCase(path, title, alt, corrupted, log)


def corpus_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file()),
                  key=lambda p: (len(p.name), p.name))


def first_title(log: bytes) -> str | None:
    reports = detect(log)
    return reports[0].title if reports else None


def measure(folder: Path, parts: Iterable[str] = PARTS) -> dict[str, Agreement]:
    """Agreement with the corpus, one figure set per part (and "all")."""
    wanted = set(parts)
    result = {part: Agreement() for part in (*PARTS, "all") if part in wanted or part == "all"}
    for path in corpus_files(folder):
        part = part_of(path.name)
        if part not in wanted:
            continue
        case = load_case(path)
        started = time.perf_counter()
        got = first_title(case.log)
        seconds = time.perf_counter() - started
        result[part].add(case, got, seconds)
        result["all"].add(case, got, seconds)
    return result
