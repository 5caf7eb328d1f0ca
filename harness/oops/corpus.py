"""Measuring the detector against a corpus of real logs with expected titles (syzkaller's format).

Each corpus file: ``KEY: value`` header lines, a blank line, then the raw log. ``TITLE:`` is the
expected title of the first report (absent: no crash), ``ALT:`` alternative titles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.oops.detect import detect


@dataclass
class CorpusCase:
    path: Path
    title: str | None
    alt: list[str]
    log: bytes


@dataclass
class Agreement:
    cases: int = 0
    detection: int = 0  # crash / no crash agrees
    exact: int = 0  # same title
    title_or_alt: int = 0
    seconds: float = 0.0
    megabytes: float = 0.0
    mismatches: list[str] = field(default_factory=list)

    def figures(self) -> str:
        pct = lambda n: 100.0 * n / max(self.cases, 1)  # noqa: E731
        speed = self.megabytes / self.seconds if self.seconds else 0.0
        return (f"{self.cases} logs: detection {pct(self.detection):.1f}%, exact title "
                f"{pct(self.exact):.1f}%, title or ALT {pct(self.title_or_alt):.1f}%; "
                f"{self.megabytes:.1f} MB in {self.seconds:.2f} s = {speed:.1f} MB/s")


def load_case(path: Path) -> CorpusCase:
    data = path.read_bytes()
    header, _, log = data.partition(b"\n\n")
    title, alt = None, []
    for line in header.decode(errors="replace").splitlines():
        key, _, value = line.partition(": ")
        if key == "TITLE":
            title = value.strip() or None  # an empty title: no report
        elif key == "ALT":
            alt.append(value.strip())
    return CorpusCase(path, title, alt, log)


def measure(folder: Path) -> Agreement:
    result = Agreement()
    for path in sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name)):
        case = load_case(path)
        started = time.perf_counter()
        reports = detect(case.log)
        result.seconds += time.perf_counter() - started
        result.megabytes += len(case.log) / 1e6
        result.cases += 1
        got = reports[0].title if reports else None
        if (got is None) == (case.title is None):
            result.detection += 1
        if got == case.title:
            result.exact += 1
        if got == case.title or (got is not None and got in case.alt):
            result.title_or_alt += 1
        else:
            result.mismatches.append(f"{path.name}: expected {case.title!r}, got {got!r}")
    return result
