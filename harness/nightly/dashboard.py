"""The dashboard: one static HTML page drawn from the history (no server, no network).

At the top, what changed since the previous run (new failures, new crash titles, fixed tests);
then each crash title (by the normalized key the history stored) with its first and last
sighting, how often, on which boxes and in which tests; then each test's last results as a
row of cells with a flakiness score: how often its verdict flips between consecutive runs (a
flaky verdict, a failure that passed on a re-run, counts as a flip of its own), as netdev's
NIPA ranks tests.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from html import escape

from harness.nightly.history import FAILING, History, Result, StoredRun

LAST_RESULTS = 20
CELL_CLASS = {"passed": "p", "failed": "f", "error": "f", "build-failed": "f", "flaky": "y",
              "known": "k", "xfailed": "k", "skipped": "s"}

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f3f3f3}
.cells i{display:inline-block;width:12px;height:14px;margin-right:2px}
i.p{background:#3a3}i.f{background:#d33}i.y{background:#e90}i.k{background:#99c}
i.s{background:#ccc}i.n{background:#fff;border:1px dashed #ccc;box-sizing:border-box}
.new{color:#b00;font-weight:600}.fixed{color:#080;font-weight:600}
.muted{color:#777}code{font-size:12px}
"""


@dataclass
class Crash:
    title: str
    first: StoredRun
    last: StoredRun
    count: int = 0
    boxes: set[str] = field(default_factory=set)
    tests: set[str] = field(default_factory=set)


@dataclass
class TestRow:
    test: str
    cells: list[tuple[StoredRun, Result | None]]
    flakiness: float


def flakiness(outcomes: list[str]) -> float:
    """How often the verdict flips between consecutive results (skips and known failures left
    out), from 0 (steady) to 1 (flips every run)."""
    verdicts = [o for o in outcomes if o in ("passed", "flaky") or o in FAILING]
    if not verdicts:
        return 0.0
    flips = sum(1 for o in verdicts if o == "flaky")
    states = [o in FAILING for o in verdicts]
    flips += sum(1 for a, b in zip(states, states[1:], strict=False) if a != b)
    return min(1.0, flips / max(1, len(verdicts) - 1))


def _key(result: Result) -> tuple[str, str | None]:
    return result.test, result.box


@dataclass
class Dashboard:
    runs: list[StoredRun]
    results: dict[int, list[Result]]

    @classmethod
    def of(cls, history: History) -> Dashboard:
        return cls(history.runs(), history.results())

    def crashes(self) -> list[Crash]:
        found: dict[str, Crash] = {}
        for run in self.runs:
            for result in self.results.get(run.id, []):
                if not result.title_key:
                    continue
                crash = found.setdefault(result.title_key, Crash(result.title or "", run, run))
                crash.last = run
                crash.count += 1
                if result.box:
                    crash.boxes.add(result.box)
                crash.tests.add(result.test)
        return sorted(found.values(), key=lambda c: (c.last.started, c.count), reverse=True)

    def tests(self, last: int = LAST_RESULTS) -> list[TestRow]:
        window = self.runs[-last:]
        by_run = {run.id: {_key(r): r for r in self.results.get(run.id, [])} for run in window}
        keys = sorted({key for results in by_run.values() for key in results},
                      key=lambda k: (k[0], k[1] or ""))
        rows = []
        for key in keys:
            cells = [(run, by_run[run.id].get(key)) for run in window]
            outcomes = [r.outcome for _, r in cells if r is not None]
            name = key[0] + (f" [{key[1]}]" if key[1] else "")
            rows.append(TestRow(name, cells, flakiness(outcomes)))
        rows.sort(key=lambda row: (-row.flakiness, row.test))
        return rows

    def changes(self) -> dict[str, list[Result]]:
        """The latest run against the one before: new failures, fixed tests, new crashes."""
        if not self.runs:
            return {"new failures": [], "fixed": [], "new crash titles": []}
        latest = self.results.get(self.runs[-1].id, [])
        before = ({_key(r): r for r in self.results.get(self.runs[-2].id, [])}
                  if len(self.runs) > 1 else {})
        seen_titles = {r.title_key for run in self.runs[:-1]
                       for r in self.results.get(run.id, []) if r.title_key}
        new_failures = [r for r in latest if r.outcome in FAILING and (
            _key(r) not in before or before[_key(r)].outcome not in FAILING)]
        fixed = [r for r in latest if r.outcome == "passed" and _key(r) in before
                 and before[_key(r)].outcome in FAILING]
        titles: dict[str, Result] = {}
        for r in latest:
            if r.title_key and r.title_key not in seen_titles:
                titles.setdefault(r.title_key, r)
        return {"new failures": new_failures, "fixed": fixed,
                "new crash titles": list(titles.values())}

    def html(self, last: int = LAST_RESULTS) -> str:
        parts = ["<!doctype html><html><head><meta charset='utf-8'>",
                 "<title>harness nightly history</title>", f"<style>{STYLE}</style>",
                 "</head><body><h1>harness nightly history</h1>"]
        if not self.runs:
            parts.append("<p>No runs yet: add one with <code>harness history add "
                         "junit.xml</code>.</p></body></html>")
            return "".join(parts)
        latest = self.runs[-1]
        counts = Counter(r.outcome for r in self.results.get(latest.id, []))
        parts.append(f"<p>{len(self.runs)} runs. Latest: {_run_label(latest)}: "
                     + ", ".join(f"{n} {escape(o)}" for o, n in sorted(counts.items()))
                     + "</p>")
        parts.append("<h2>Since the previous run</h2>")
        for heading, rows in self.changes().items():
            css = "fixed" if heading == "fixed" else "new"
            parts.append(f"<h3 class='{css}'>{escape(heading)} ({len(rows)})</h3>")
            if rows:
                parts.append("<ul>" + "".join(
                    f"<li>{_test_label(r)}{_detail(r, heading)}</li>" for r in rows) + "</ul>")
        parts.append("<h2>Crash titles</h2>")
        crashes = self.crashes()
        if crashes:
            parts.append("<table><tr><th>title</th><th>first seen</th><th>last seen</th>"
                         "<th>times</th><th>boxes</th><th>tests</th></tr>")
            for crash in crashes:
                parts.append(
                    f"<tr><td>{escape(crash.title)}</td><td>{_run_label(crash.first)}</td>"
                    f"<td>{_run_label(crash.last)}</td><td>{crash.count}</td>"
                    f"<td>{escape(', '.join(sorted(crash.boxes)))}</td>"
                    f"<td>{'<br>'.join(escape(t) for t in sorted(crash.tests))}</td></tr>")
            parts.append("</table>")
        else:
            parts.append("<p class='muted'>No crash in any run.</p>")
        parts.append(f"<h2>Tests: the last {min(last, len(self.runs))} runs, oldest first</h2>"
                     "<p class='muted'>green passed, red failed, orange flaky, blue known "
                     "failure, grey skipped, blank not run; flakiness: how often the verdict "
                     "flips</p><table><tr><th>test</th><th>results</th><th>flakiness</th></tr>")
        for row in self.tests(last):
            cells = "".join(_cell(run, result) for run, result in row.cells)
            parts.append(f"<tr><td>{escape(row.test)}</td><td class='cells'>{cells}</td>"
                         f"<td>{row.flakiness:.2f}</td></tr>")
        parts.append("</table></body></html>")
        return "\n".join(parts)


def _run_label(run: StoredRun) -> str:
    commit = f" {escape(run.commit[:12])}" if run.commit else ""
    return f"{escape(run.started)}{commit}"


def _test_label(result: Result) -> str:
    box = f" [{escape(result.box)}]" if result.box else ""
    return f"<code>{escape(result.test)}</code>{box}"


def _detail(result: Result, heading: str) -> str:
    text = result.title if heading == "new crash titles" else (result.title or result.message)
    return f": {escape(text)}" if text and heading != "fixed" else ""


def _cell(run: StoredRun, result: Result | None) -> str:
    if result is None:
        return f"<i class='n' title='{escape(run.started)}: not run'></i>"
    why = result.title or result.message or ""
    tip = f"{run.started}: {result.outcome}" + (f": {why}" if why else "")
    return f"<i class='{CELL_CLASS.get(result.outcome, 's')}' title='{escape(tip)}'></i>"
