"""Grading outputs: gradebook CSV, JUnit XML, Gradescope results.json, a self-contained HTML."""

from __future__ import annotations

import csv
import html
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.grade.plugin import _atomic_write
from harness.grade.spec import Spec


def write_reports(results: list, spec: Spec, out: Path) -> None:
    ordered = sorted(results, key=lambda r: (-r.score, r.student))
    _atomic_write(out / "gradebook.csv", gradebook_csv(ordered))
    _atomic_write(out / "junit.xml", junit_xml(ordered, spec))
    for result in ordered:
        _atomic_write(out / "gradescope" / result.student / "results.json",
                      json.dumps(gradescope(result), indent=1))
    _atomic_write(out / "report.html", html_report(ordered, spec))


def gradebook_csv(results: list) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["student", "score", "max_score", "status", "late_penalty_percent",
                     "warning_penalty", "reason"])
    for r in results:
        writer.writerow([r.student, r.score, r.max_score, r.status, r.late_penalty_percent,
                         r.warning_penalty, r.reason])
    return buf.getvalue()


def gradescope(result) -> dict:
    tests = [{"name": t["test"], "score": t["earned"], "max_score": t["points"],
              "status": "passed" if t["outcome"] == "passed" else "failed",
              "output": t["message"][-2000:]} for t in result.tests]
    data = {"score": result.score, "tests": tests}
    if result.reason:
        data["output"] = result.reason
    return data


def junit_xml(results: list, spec: Spec) -> str:
    suites = ET.Element("testsuites", name=spec.assignment)
    for r in results:
        suite = ET.SubElement(suites, "testsuite", name=r.student, tests=str(len(r.tests) or 1))
        if not r.tests:
            case = ET.SubElement(suite, "testcase", classname=r.student, name="submission")
            ET.SubElement(case, "failure", message=r.reason or r.status)
        for t in r.tests:
            case = ET.SubElement(suite, "testcase", classname=r.student, name=t["test"],
                                 time=str(t.get("seconds", 0)))
            if t["outcome"] != "passed":
                ET.SubElement(case, "failure", message=t["message"][:200]).text = t["message"]
            if t.get("kernel_lines"):
                ET.SubElement(case, "system-out").text = "\n".join(t["kernel_lines"])
    return ET.tostring(suites, encoding="unicode")


def html_report(results: list, spec: Spec) -> str:
    e = html.escape
    rows = []
    for r in results:
        details = []
        if r.reason:
            details.append(f"<p class=reason>{e(r.reason)}</p>")
        if r.late_penalty_percent or r.warning_penalty:
            details.append(f"<p>late penalty {r.late_penalty_percent:g} %, warning penalty "
                           f"{r.warning_penalty:g} points</p>")
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
        rows.append(
            f"<details class=student><summary><span class=name>{e(r.student)}</span> "
            f"<span class=score>{r.score:g} / {r.max_score:g}</span> "
            f"<span class=status>{e(r.status)}</span></summary>{''.join(details)}</details>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(spec.assignment)}: grades</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
summary {{ cursor: pointer; padding: .3em; }}
.student {{ border-bottom: 1px solid #ccc; }}
.name {{ display: inline-block; width: 18em; font-weight: bold; }}
.score {{ display: inline-block; width: 8em; }}
.pass {{ color: #176f2c; }} .fail, .crash, .reason {{ color: #a31515; }}
pre {{ background: #f4f4f4; padding: .5em; overflow-x: auto; }}
</style></head><body>
<h1>{e(spec.assignment)}</h1>
<p>{len(results)} submissions, sorted by score. Click a student for the details.</p>
{''.join(rows)}
</body></html>
"""
