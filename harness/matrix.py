"""The kernel matrix's grid: one module's tests (or builds) across boxes, as data and as files.

A cell is one test on one box with its outcome (passed, failed, error, skipped, build-failed)
and a title (the crash title or the first line of the failure; the reason of a skip). The same
grid comes out of a pytest matrix run and of ``harness build --box a,b,c``, and is written as
a terminal table, ``matrix.json`` (read back by ``harness history add``) and ``matrix.html``,
whose cells link to each cell's full report. Every string in it came from a test, a module or
a compiler, so it is escaped where it lands.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from harness.untrusted import one_line

OUTCOMES = ("passed", "failed", "error", "skipped", "build-failed")
# How a cell reads in the terminal: a short word, then the title.
TERMINAL_WORD = {"passed": "ok", "failed": "FAIL", "error": "ERROR", "skipped": "skip",
                 "build-failed": "BUILD"}
CELL_WIDTH = (12, 48)  # a column's narrowest and widest, in characters
TITLE_LIMIT = 300  # characters of a title kept in matrix.json (the full text is the report)


@dataclass(frozen=True)
class MatrixBox:
    name: str
    kernel: str | None  # the release the box ran (or was built against); None: never reached


@dataclass
class Cell:
    test: str  # the test's id without the box
    box: str
    outcome: str  # one of OUTCOMES
    title: str | None = None
    kernel: str | None = None
    report: str = ""  # the full text behind the cell (failure, build log), for its own page


@dataclass
class Grid:
    boxes: list[MatrixBox] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(timezone.utc)
                         .isoformat(timespec="seconds"))
    build_only: bool = False  # nothing booted: passed means the module built

    @property
    def mode(self) -> str:
        return "build-only (passed: built; nothing loaded)" if self.build_only else "vm"

    def add(self, cell: Cell) -> None:
        if cell.outcome not in OUTCOMES:
            raise ValueError(f"outcome {cell.outcome!r} is not one of {', '.join(OUTCOMES)}")
        cell.title = one_line(cell.title, TITLE_LIMIT) if cell.title else None
        self.cells = [c for c in self.cells if (c.test, c.box) != (cell.test, cell.box)]
        self.cells.append(cell)
        self.note_kernel(cell.box, cell.kernel)

    def note_kernel(self, box: str, kernel: str | None) -> None:
        """The release ``box`` ran, once a test on it said."""
        if kernel:
            self.boxes = [MatrixBox(b.name, b.kernel or kernel) if b.name == box else b
                          for b in self.boxes]

    def tests(self) -> list[str]:
        seen: dict[str, None] = {}
        for cell in self.cells:
            seen.setdefault(cell.test, None)
        return list(seen)

    def cell(self, test: str, box: str) -> Cell | None:
        return next((c for c in self.cells if c.test == test and c.box == box), None)

    @property
    def failed(self) -> bool:
        return any(c.outcome in ("failed", "error", "build-failed") for c in self.cells)

    # -- out ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"started": self.started, "mode": "build-only" if self.build_only else "vm",
                "boxes": [asdict(b) for b in self.boxes],
                "results": [{"test": c.test, "box": c.box, "kernel": c.kernel,
                             "outcome": c.outcome,
                             "title": None if c.outcome == "passed" else c.title}
                            for c in self.cells]}

    def terminal(self) -> list[str]:
        """The grid as lines: a row per test, a column per box."""
        tests = self.tests()
        files = {t.rpartition("::")[0] for t in tests}
        common = files.pop() + "::" if len(files) == 1 and "" not in files else ""
        width = min(60, max([len("test"), *(len(t) - len(common) for t in tests)]))
        texts = [len(_cell_text(c)) for c in self.cells]
        texts += [len(b.name) for b in self.boxes] + [len(b.kernel or "") for b in self.boxes]
        cell_width = max(CELL_WIDTH[0], min(CELL_WIDTH[1], max(texts)))
        header = [f"{'test':{width}}"] + [f"{b.name:{cell_width}}" for b in self.boxes]
        kernels = [f"{'':{width}}"] + [f"{(b.kernel or '-'):{cell_width}}" for b in self.boxes]
        lines = [f"in {common[:-2]}"] if common else []
        lines += ["  ".join(header).rstrip(), "  ".join(kernels).rstrip()]
        for test in tests:
            row = [f"{_clip(test[len(common):], width):{width}}"]
            for box in self.boxes:
                cell = self.cell(test, box.name)
                row.append(f"{_clip(_cell_text(cell), cell_width):{cell_width}}")
            lines.append("  ".join(row).rstrip())
        counts = {o: sum(c.outcome == o for c in self.cells) for o in OUTCOMES}
        lines.append(", ".join(f"{n} {o}" for o, n in counts.items() if n)
                     + f" ({len(tests)} tests x {len(self.boxes)} boxes"
                     + (", build-only: passed means built)" if self.build_only else ")"))
        return lines

    def write(self, folder: Path) -> dict[str, Path]:
        """matrix.json, matrix.html and a page per cell with a report (cells/N.txt)."""
        folder.mkdir(parents=True, exist_ok=True)
        cells_dir = folder / "cells"
        cells_dir.mkdir(exist_ok=True)
        for old in cells_dir.glob("*.txt"):
            old.unlink()
        links: dict[tuple[str, str], str] = {}
        for number, cell in enumerate(self.cells):
            if cell.report:
                name = f"cells/{number}-{_slug(cell.box)}.txt"
                (folder / name).write_text(cell.report, errors="replace")
                links[cell.test, cell.box] = name
        json_path, html_path = folder / "matrix.json", folder / "matrix.html"
        json_path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        html_path.write_text(self.html(links))
        return {"json": json_path, "html": html_path}

    def html(self, links: dict[tuple[str, str], str]) -> str:
        head = "".join(f"<th>{escape(b.name)}<br><span class=k>{escape(b.kernel or '-')}"
                       "</span></th>" for b in self.boxes)
        rows = []
        for test in self.tests():
            cells = []
            for box in self.boxes:
                cell = self.cell(test, box.name)
                if cell is None:
                    cells.append("<td class=none>-</td>")
                    continue
                text = escape(_cell_text(cell))
                link = links.get((test, box.name))
                body = f'<a href="{escape(link)}">{text}</a>' if link else text
                cells.append(f'<td class="{cell.outcome}" title="{escape(cell.title or "")}">'
                             f"{body}</td>")
            rows.append(f"<tr><th class=t>{escape(test)}</th>{''.join(cells)}</tr>")
        counts = ", ".join(f"{sum(c.outcome == o for c in self.cells)} {o}" for o in OUTCOMES
                           if any(c.outcome == o for c in self.cells))
        return (f"<!doctype html><meta charset=utf-8><title>kernel matrix</title>"
                f"<style>{STYLE}</style><h1>Kernel matrix</h1>"
                f"<p>{escape(self.started)}: {len(self.tests())} tests x {len(self.boxes)} "
                f"boxes; {escape(counts)}; run: {escape(self.mode)}</p>"
                f"<table><tr><th>test</th>{head}</tr>{''.join(rows)}</table>")


STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:4px 8px;border:1px solid #ddd;text-align:left;
vertical-align:top;max-width:22em;overflow-wrap:anywhere}th{background:#f3f3f3}
th.t{font-weight:normal;font-family:monospace}.k{font-weight:normal;color:#666;font-size:12px}
td.passed{background:#d9f2d9}td.failed,td.error{background:#f7d4d4}
td.build-failed{background:#f3c6a5}td.skipped{background:#eee;color:#666}
td a{color:inherit}
"""


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    word = TERMINAL_WORD[cell.outcome]
    return f"{word}: {cell.title}" if cell.title and cell.outcome != "passed" else word


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def split_cell_id(nodeid: str, boxes: list[str]) -> tuple[str, str] | None:
    """``test_x.py::test_a[p-debian-11]`` -> (``test_x.py::test_a[p]``, ``debian-11``): the
    box is the last part of a matrix test's id; None when the id names no box of ``boxes``."""
    where, sep, name = nodeid.rpartition("::")
    if not name.endswith("]") or "[" not in name:
        return None
    function, _, params = name[:-1].partition("[")
    base = where + sep + function
    for box in sorted(boxes, key=len, reverse=True):
        if params == box:
            return base, box
        if params.endswith("-" + box):
            return f"{base}[{params[:-len(box) - 1]}]", box
    return None
