"""Grading outputs: gradebook CSV, JUnit XML, Gradescope results.json, a self-contained HTML."""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness.coverage import line_ranges
from harness.grade.spec import Spec
from harness.paths import atomic_write
from harness.untrusted import capped, visible


def write_reports(results: list, spec: Spec, out: Path) -> None:
    ordered = sorted(results, key=lambda r: (-r.score, r.student))
    atomic_write(out / "gradebook.csv", gradebook_csv(ordered))
    atomic_write(out / "junit.xml", junit_xml(ordered, spec))
    for result in ordered:
        atomic_write(out / "gradescope" / result.key / "results.json",
                      json.dumps(gradescope(result), indent=1))
    atomic_write(out / "report.html", html_report(ordered, spec))


# OWASP's rule for CSV injection: a cell starting with one of these is a formula to a
# spreadsheet; a leading apostrophe makes it text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: object) -> object:
    """A gradebook cell: numbers as they are, text with a formula's first character made
    harmless and its control characters visible."""
    if not isinstance(value, str):
        return value
    text = visible(value, 1000)
    return "'" + text if text.startswith(_FORMULA_START) else text


def gradebook_csv(results: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", "score", "max_score", "status", "late_penalty_percent",
                     "warning_penalty", "reason", "folder"])
    for r in results:
        writer.writerow([spreadsheet_text(cell) for cell in (
            r.student, r.score, r.max_score, r.status, r.late_penalty_percent,
            r.warning_penalty, r.reason, r.key)])
    return buf.getvalue()


def gradescope(result) -> dict:
    tests = [{"name": t["test"], "score": t["earned"], "max_score": t["points"],
              "status": "passed" if t["outcome"] == "passed" else "failed",
              "output": capped(visible(t["message"]), 2000, keep="tail")}
             for t in result.tests]
    data = {"score": result.score, "tests": tests}
    if result.reason:
        data["output"] = visible(result.reason, 2000)
    return data


def junit_xml(results: list, spec: Spec) -> str:
    """JUnit XML that stays well-formed whatever bytes a student's names, kernel lines and
    messages hold (:func:`harness.untrusted.visible` escapes what XML 1.0 forbids)."""
    v = visible
    suites = ET.Element("testsuites", name=v(spec.assignment))
    for r in results:
        name = v(r.student)
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(r.tests) or 1))
        if not r.tests:
            case = ET.SubElement(suite, "testcase", classname=name, name="submission")
            ET.SubElement(case, "failure", message=v(r.reason or r.status, 2000))
        for t in r.tests:
            case = ET.SubElement(suite, "testcase", classname=name, name=v(t["test"]),
                                 time=str(t.get("seconds", 0)))
            if t["outcome"] != "passed":
                message = v(t["message"])
                ET.SubElement(case, "failure", message=message[:200]).text = message
            if t.get("kernel_lines"):
                ET.SubElement(case, "system-out").text = "\n".join(
                    v(line) for line in t["kernel_lines"])
    return ET.tostring(suites, encoding="unicode")


@dataclass
class ClassView:
    """What a teacher of 200 students reads first: the whole class at a glance."""

    max_score: float
    histogram: list[tuple[str, int]]  # score band -> students
    pass_rates: list[tuple[str, int, int]]  # test, passed, ran
    crashes: list[tuple[str, list[str]]]  # title -> students, most common first
    warnings: list[tuple[str, list[str]]]  # compiler warning -> students
    not_graded: list[tuple[str, list[str]]]  # reason -> students (rejected, incomplete)
    outliers: list[tuple[str, str]]  # student, why


def class_view(results: list) -> ClassView:
    graded = [r for r in results if r.status == "graded"]
    top = max((r.max_score for r in results), default=0.0)
    bands = max(1, min(10, int(top))) if top else 1
    width = top / bands if top else 1.0
    counts = [0] * bands
    for r in results:
        counts[min(bands - 1, int(r.score / width)) if width else 0] += 1
    labels = [f"{i * width:g}-{(i + 1) * width:g}" for i in range(bands)]
    tests: dict[str, list[int]] = {}
    crashes: dict[str, set[str]] = defaultdict(set)
    warnings: dict[str, set[str]] = defaultdict(set)
    seconds: dict[str, float] = {}
    log_lines: dict[str, int] = {}
    for r in graded:
        for t in r.tests:
            passed_ran = tests.setdefault(t["test"], [0, 0])
            passed_ran[0] += t["outcome"] == "passed"
            passed_ran[1] += 1
            for c in t.get("crashes", []):
                crashes[c["title"]].add(r.student)
            for d in t.get("diagnostics", []):
                if d["severity"] == "warning":
                    warnings[d["message"]].add(r.student)
        seconds[r.student] = sum(t.get("seconds", 0) for t in r.tests)
        log_lines[r.student] = sum(len(t.get("kernel_lines", [])) for t in r.tests)
    not_graded: dict[str, set[str]] = defaultdict(set)
    for r in results:
        if r.status != "graded":
            not_graded[f"{r.status}: {r.reason.splitlines()[0] if r.reason else ''}"].add(
                r.student)
    return ClassView(
        top, list(zip(labels, counts, strict=True)),
        [(name, pr[0], pr[1]) for name, pr in tests.items()],
        _by_size(crashes), _by_size(warnings), _by_size(not_graded),
        _outliers(seconds, "s of tests") + _outliers(log_lines, "kernel log lines"))


def _by_size(groups: dict[str, set[str]]) -> list[tuple[str, list[str]]]:
    return sorted(((key, sorted(names)) for key, names in groups.items()),
                  key=lambda item: (-len(item[1]), item[0]))


def _outliers(values: dict[str, float], unit: str) -> list[tuple[str, str]]:
    """Students far above the class: more than three times the median and in the top 5."""
    if len(values) < 3:
        return []
    middle = statistics.median(values.values())
    ranked = sorted(values.items(), key=lambda item: -item[1])[:5]
    return [(name, f"{value:g} {unit} (class median {middle:g})") for name, value in ranked
            if value > 3 * max(middle, 1)]


def _escape(text: str) -> str:
    """HTML text of a string a student may control: control characters visible, then escaped."""
    return html.escape(visible(text))


def _histogram_svg(view: ClassView) -> str:
    e = _escape
    peak = max((count for _, count in view.histogram), default=0) or 1
    bar_w, height = 44, 120
    top = 16  # room for the count above the tallest bar
    bars = []
    for index, (label, count) in enumerate(view.histogram):
        h = round(height * count / peak)
        x = 30 + index * (bar_w + 6)
        bars.append(
            f'<rect x="{x}" y="{top + height - h}" width="{bar_w}" height="{h}" fill="#3b6ea5">'
            f"<title>{count} student(s) scored {e(label)}</title></rect>"
            f'<text x="{x + bar_w / 2}" y="{top - 4 + height - h}" text-anchor="middle" '
            f'font-size="11">{count}</text>'
            f'<text x="{x + bar_w / 2}" y="{top + height + 16}" text-anchor="middle" '
            f'font-size="10">{e(label)}</text>')
    total_w = 30 + len(view.histogram) * (bar_w + 6)
    return (f'<svg role="img" aria-label="score distribution" width="{total_w}" '
            f'height="{top + height + 24}" class=histogram>{"".join(bars)}</svg>')


def _class_summary(view: ClassView) -> str:
    e = _escape
    rates = "".join(
        f"<tr><td class=test>{e(name)}</td><td>{passed}/{ran}</td><td><span class=bar "
        f'style="width:{round(100 * passed / ran) if ran else 0}%"></span></td></tr>'
        for name, passed, ran in view.pass_rates)

    def groups(items: list[tuple[str, list[str]]], empty: str) -> str:
        if not items:
            return f"<p class=none>{e(empty)}</p>"
        return "<ul class=groups>" + "".join(
            f"<li><b>{len(names)} student{'s' if len(names) != 1 else ''}</b>: {e(key)}"
            f"<div class=who>{e(', '.join(names))}</div></li>" for key, names in items) + "</ul>"

    outliers = "".join(f"<li><b>{e(name)}</b>: {e(why)}</li>" for name, why in view.outliers)
    return f"""<section class=summary>
<h2>The class</h2>
<div class=cols>
<div><h3>Scores (out of {view.max_score:g})</h3>{_histogram_svg(view)}</div>
<div><h3>Tests passed</h3><table class=rates>{rates}</table></div>
</div>
<h3>Kernel crashes</h3>{groups(view.crashes, "No test crashed the kernel.")}
<h3>Compiler warnings</h3>{groups(view.warnings, "No compiler warnings.")}
<h3>Not graded</h3>{groups(view.not_graded, "Every submission was graded.")}
<h3>Outliers</h3>{f"<ul>{outliers}</ul>" if outliers else "<p class=none>None.</p>"}
</section>"""


def _percent(files: list[dict]) -> float:
    total = sum(f["total"] for f in files)
    return 100 * sum(f["covered"] for f in files) / total if total else 0.0


def _coverage_line(item: dict) -> str:
    """``llist.c: 18/21 lines reached by the tests (86 %); never reached: 33-34, 40``."""
    if "problem" in item:
        return f"coverage: {item['problem']}"
    percent = _percent([item])
    missed = f"; never reached: lines {line_ranges(item['missed'])}" if item["missed"] else ""
    return (f"coverage of {item['source']}: {item['covered']}/{item['total']} lines reached "
            f"by the tests ({percent:.0f} %){missed}")


def html_report(results: list, spec: Spec) -> str:
    e = _escape
    rows = []
    for r in results:
        details = []
        if r.reason:
            details.append(f"<p class=reason>{e(r.reason)}</p>")
        if r.late_penalty_percent or r.warning_penalty:
            details.append(f"<p>late penalty {r.late_penalty_percent:g} %, warning penalty "
                           f"{r.warning_penalty:g} points</p>")
        details += [f"<p class=coverage>{e(_coverage_line(c))}</p>"
                    for c in getattr(r, "coverage", [])]
        for t in r.tests:
            status = "pass" if t["outcome"] == "passed" else "fail"
            parts = [f"<h4 class={status}>{e(t['test'])}: {t['earned']:g}/{t['points']:g}</h4>"]
            for c in t.get("crashes", []):
                where = f" at {e(c['location'])}" if c.get("location") else ""
                src = f": <code>{e(c['source'].strip())}</code>" if c.get("source") else ""
                parts.append(f"<p class=crash>{e(c['title'])}{where}{src}</p>")
            diags = [d for d in t.get("diagnostics", []) if d["severity"] in ("error", "warning")]
            if diags:
                parts.append("<pre>" + e("\n".join(
                    f"{d['file']}:{d['line']}: {d['severity']}: {d['message']}" for d in diags))
                    + "</pre>")
            if t["message"]:
                parts.append(f"<details><summary>message</summary><pre>{e(t['message'])}</pre>"
                             "</details>")
            if t.get("kernel_lines"):
                parts.append("<details><summary>kernel log</summary><pre>"
                             + e("\n".join(t["kernel_lines"])) + "</pre></details>")
            details.append("".join(parts))
        counted = [c for c in getattr(r, "coverage", []) if "total" in c]
        reached = (f"<span class=cov title=\"lines of the student's files the tests reached\">"
                   f"{_percent(counted):.0f} % lines</span> " if counted else "")
        rows.append(
            f"<details class=student><summary><span class=name>{e(r.student)}</span> "
            f"{reached}<span class=score>{r.score:g} / {r.max_score:g}</span> "
            f"<span class=status>{e(r.status)}</span></summary>{''.join(details)}</details>")
    summary = _class_summary(class_view(results))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(spec.assignment)}: grades</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
summary {{ cursor: pointer; padding: .3em; }}
.student {{ border-bottom: 1px solid #ccc; }}
.student > summary {{ display: flex; gap: 1em; align-items: baseline; }}
.name {{ flex: 1 1 auto; min-width: 0; font-weight: bold; overflow-wrap: anywhere; }}
.score {{ flex: 0 0 7em; text-align: right; }}
.status {{ flex: 0 0 7em; }}
.cov {{ flex: 0 0 8em; text-align: right; color: #555; }}
.summary {{ border: 1px solid #ccc; padding: 0 1em 1em; margin-bottom: 2em; }}
.cols {{ display: flex; flex-wrap: wrap; gap: 3em; }}
.rates td {{ padding: .15em .6em .15em 0; }} .rates .test {{ font-family: monospace; }}
.bar {{ display: inline-block; height: .8em; background: #3b6ea5; }}
.rates td:last-child {{ width: 12em; }}
.groups li {{ margin-bottom: .4em; }} .who {{ color: #555; font-size: .9em; }}
.none {{ color: #555; }}
.pass {{ color: #176f2c; }} .fail, .crash, .reason {{ color: #a31515; }}
pre {{ background: #f4f4f4; padding: .5em; overflow-x: auto; }}
</style></head><body>
<h1>{e(spec.assignment)}</h1>
{summary}
<h2>Students</h2>
<p>{len(results)} submissions, sorted by score. Click a student for the details.</p>
{''.join(rows)}
</body></html>
"""
