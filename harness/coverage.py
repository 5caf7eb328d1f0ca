"""Which lines of a module the tests ran: gcov line counts of out-of-tree modules, per test.

A kernel with ``CONFIG_GCOV_KERNEL`` (the debug box's) gives every object built with
``GCOV_PROFILE=y`` (:data:`harness.build.PROFILE_VARIABLE`) a ``.gcda`` file under
``/sys/kernel/debug/gcov/<build folder>/``, kept after the module is unloaded
(``gcov_persist``; Documentation/dev-tools/gcov.rst). This module owns what happens around
that: the guest's capability check, the counter reset before each test, the read of a test's
``.gcda`` files after it (in the same command as its kernel log), and the host side: the box's
own ``gcov`` (the compiler's version, in the root filesystem's sandbox, so a student's hostile
counters are parsed where they can reach nothing) turns counters and the build's ``.gcno``
notes into per-line hit counts, mapped back from the guest's build folder to the user's
sources. :class:`CoverageReport` sums them over tests, knows which lines only one test
reached, and writes what people read: a terminal line per file, Cobertura XML (what CI
dashboards take) and HTML pages.

gcovr and lcov expect the objects and sources at their compile-time paths on one machine; here
the compiler ran in a sandbox or a guest and the counters come from debugfs, so the formats
are written here from gcov's own JSON.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError
from harness.untrusted import confined_file, untrusted_process

GCOV_ROOT = "/sys/kernel/debug/gcov"
RESET_COMMAND = f"echo 1 > {GCOV_ROOT}/reset"
# Mounted by systemd on Debian and Fedora; mounted here when a box does not.
CAPABILITY_PROBE = (f"{{ test -d {GCOV_ROOT} || mount -t debugfs none /sys/kernel/debug; }} "
                    f"2>/dev/null; test -e {GCOV_ROOT}/reset && echo yes || echo no")
NO_GCOV = ("its kernel ({release}) has no gcov support (CONFIG_GCOV_KERNEL: "
           f"{GCOV_ROOT} is missing); the debug box's kernel has it: --vm-box debian-12-debug")
_RECORD = "=== "


class CoverageError(HarnessError):
    """Counters could not be turned into line counts (no gcov, unreadable data)."""


def read_script(remote_dirs: Iterable[str]) -> str:
    """One shell part (``Transport.run_parts``) printing each .gcda file under the build
    folders as ``=== PATH`` and its base64 on the next line."""
    folders = " ".join(shlex.quote(GCOV_ROOT + d) for d in sorted(set(remote_dirs)))
    return (f"find {folders} -name '*.gcda' 2>/dev/null | while read -r f; do "
            f'echo "{_RECORD}$f"; base64 -w0 "$f"; echo; done; true')


def parse_read(output: str) -> dict[str, bytes]:
    """What :func:`read_script` printed: guest build path of each .gcda (debugfs prefix
    removed) -> its bytes."""
    files: dict[str, bytes] = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(_RECORD) and index + 1 < len(lines):
            path = line[len(_RECORD):].removeprefix(GCOV_ROOT)
            try:
                files[path] = base64.b64decode(lines[index + 1], validate=True)
            except ValueError:
                continue  # a file that vanished mid-read (the module's data was reset)
    return files


@dataclass
class Counters:
    """One test's counters for one module folder, with what is needed to read them."""

    test: str
    source_dir: Path  # on the host
    remote_dir: str  # the build folder, in the guest and in the build sandbox alike
    gcda: dict[str, bytes]  # path relative to remote_dir -> counters
    gcno: dict[str, Path]  # path relative to remote_dir -> the build's notes file


# One gcov run: (folder holding .gcda/.gcno files, their names) -> gcov's JSON lines.
GcovRunner = Callable[[Path, list[str]], str]


def host_gcov(folder: Path, names: list[str]) -> str:
    """The host's own gcov (for boxes whose root filesystem is not kept here)."""
    gcov = shutil.which("gcov")
    if gcov is None:
        raise CoverageError("gcov is not installed on this host (apt-get install gcc), and the "
                            "box's root filesystem, whose gcov would be used, is not here")
    return _run_gcov([gcov, *GCOV_ARGS, *names], folder)


GCOV_ARGS = ("--json-format", "--stdout")


def _run_gcov(argv: list[str], folder: Path) -> str:
    # The notes and counters come from a module's build and its run: gcov reads them confined.
    done = untrusted_process(argv, folder, timeout=120)
    if done is None:
        raise CoverageError("gcov ran for over 120 s")
    if done.returncode != 0:
        raise CoverageError(f"gcov failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def line_counts(counters: Counters, gcov: GcovRunner) -> dict[Path, dict[int, int]]:
    """Per host source file of the module folder: line -> hits, from one test's counters (an
    object without counters, never loaded, counts 0 on each line). Files outside the folder
    (kernel headers' inline functions) and files kbuild generated are left out."""
    with tempfile.TemporaryDirectory(prefix="harness-gcov-") as scratch:
        folder = Path(scratch)
        names = []
        for rel, notes in sorted(counters.gcno.items()):
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notes, target)
            name = str(PurePosixPath(rel).with_suffix(".gcda"))
            if name in counters.gcda:
                target.with_suffix(".gcda").write_bytes(counters.gcda[name])
            names.append(name)
        if not names:
            return {}
        output = gcov(folder, names)
    counts: dict[Path, dict[int, int]] = {}
    prefix = counters.remote_dir.rstrip("/") + "/"
    for document in _json_documents(output):
        for entry in document.get("files", []):
            name = str(entry.get("file", ""))
            if not name.startswith(prefix):
                continue
            # None for kbuild's generated .mod.c, and for what a hostile Makefile or #line
            # names with .., an absolute path or a link: a host file must never reach a page.
            source = confined_file(counters.source_dir, name[len(prefix):])
            if source is None:
                continue
            lines = counts.setdefault(source, {})
            for line in entry.get("lines", []):
                number = int(line["line_number"])
                lines[number] = lines.get(number, 0) + int(line["count"])
    return counts


def _json_documents(output: str) -> Iterable[dict]:
    for text in output.splitlines():
        text = text.strip()
        if text.startswith("{"):
            yield json.loads(text)


@dataclass
class FileSummary:
    source: Path
    covered: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 0.0

    def line(self, root: Path) -> str:
        """``hello.c 18/21 lines, 86 %`` and where the file is."""
        return (f"{self.source.name} {self.covered}/{self.total} lines, {self.percent:.0f} % "
                f"({_relative(self.source, root)})")


@dataclass
class CoverageReport:
    """Line hits summed over tests, and which test reached which line."""

    hits: dict[Path, dict[int, int]] = field(default_factory=dict)
    reached_by: dict[Path, dict[int, set[str]]] = field(default_factory=dict)
    tests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be counted, and why

    def add(self, test: str, counts: dict[Path, dict[int, int]]) -> None:
        if test not in self.tests:
            self.tests.append(test)
        for source, lines in counts.items():
            total = self.hits.setdefault(source, {})
            by = self.reached_by.setdefault(source, {})
            for number, count in lines.items():
                total[number] = total.get(number, 0) + count
                if count:
                    by.setdefault(number, set()).add(test)

    def files(self) -> list[FileSummary]:
        """A summary per source file."""
        return [self.file(source) for source in sorted(self.hits)]

    def file(self, source: Path) -> FileSummary:
        lines = self.hits[source]
        return FileSummary(source, sum(1 for c in lines.values() if c), len(lines))

    def only_reached_by(self, test: str) -> dict[Path, list[int]]:
        """The lines this test reached and no other test did."""
        alone = {}
        for source, lines in self.reached_by.items():
            mine = sorted(n for n, tests in lines.items() if tests == {test})
            if mine:
                alone[source] = mine
        return alone

    def summary(self) -> dict:
        """What front ends read back (the grader, per student): per file its lines and the
        lines never reached, and what was not counted."""
        return {"files": [{"source": str(s.source), "covered": s.covered, "total": s.total,
                           "missed": sorted(n for n, c in self.hits[s.source].items() if not c)}
                          for s in self.files()],
                "problems": self.problems}

    # -- outputs ---------------------------------------------------------------------------------
    def write(self, folder: Path, root: Path) -> dict[str, Path]:
        """coverage.xml, index.html with a page per source, per-test.json (the lines only each
        test reached) and summary.json in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        written = {"cobertura": folder / "coverage.xml", "html": folder / "index.html",
                   "per_test": folder / "per-test.json", "summary": folder / "summary.json"}
        written["summary"].write_text(json.dumps(self.summary(), indent=1))
        written["cobertura"].write_text(self.cobertura(root))
        pages = {source: f"{index:02d}-{source.name}.html"
                 for index, source in enumerate(sorted(self.hits))}
        for source, page in pages.items():
            (folder / page).write_text(self.source_page(source, root))
        alone = {test: self.only_reached_by(test) for test in self.tests}
        written["html"].write_text(self.index_page(pages, alone, root))
        written["per_test"].write_text(json.dumps({
            test: {str(_relative(s, root)): lines for s, lines in reached.items()}
            for test, reached in alone.items()}, indent=1))
        return written

    def cobertura(self, root: Path) -> str:
        """Cobertura XML (coverage-04.dtd): a package per module folder, a class per file."""
        summaries = self.files()
        covered, total = sum(s.covered for s in summaries), sum(s.total for s in summaries)
        top = ET.Element("coverage", {
            "line-rate": _rate(covered, total), "branch-rate": "0",
            "lines-covered": str(covered), "lines-valid": str(total),
            "branches-covered": "0", "branches-valid": "0", "complexity": "0",
            "version": "harness", "timestamp": str(int(time.time()))})
        ET.SubElement(ET.SubElement(top, "sources"), "source").text = str(root.resolve())
        packages = ET.SubElement(top, "packages")
        by_folder: dict[Path, list[FileSummary]] = {}
        for summary in summaries:
            by_folder.setdefault(summary.source.parent, []).append(summary)
        for folder, members in sorted(by_folder.items()):
            package = ET.SubElement(packages, "package", {
                "name": str(_relative(folder, root)),
                "line-rate": _rate(sum(m.covered for m in members), sum(m.total for m in members)),
                "branch-rate": "0", "complexity": "0"})
            classes = ET.SubElement(package, "classes")
            for member in members:
                cls = ET.SubElement(classes, "class", {
                    "name": member.source.name, "filename": str(_relative(member.source, root)),
                    "line-rate": _rate(member.covered, member.total), "branch-rate": "0",
                    "complexity": "0"})
                ET.SubElement(cls, "methods")
                lines = ET.SubElement(cls, "lines")
                for number, count in sorted(self.hits[member.source].items()):
                    ET.SubElement(lines, "line", {"number": str(number), "hits": str(count),
                                                  "branch": "false"})
        ET.indent(top)
        return ("<?xml version=\"1.0\" ?>\n<!DOCTYPE coverage SYSTEM "
                "\"http://cobertura.sourceforge.net/xml/coverage-04.dtd\">\n"
                + ET.tostring(top, encoding="unicode") + "\n")

    def index_page(self, pages: dict[Path, str], alone: dict[str, dict[Path, list[int]]],
                   root: Path) -> str:
        """The file table, and ``alone``: per test, the lines only it reached."""
        rows = "".join(
            f"<tr><td><a href=\"{html.escape(pages[s.source])}\">"
            f"{html.escape(str(_relative(s.source, root)))}</a></td><td>{s.covered}/{s.total}"
            f"</td><td>{s.percent:.0f} %</td><td><span class=bar><span style=\"width:"
            f"{s.percent:.0f}%\"></span></span></td></tr>" for s in self.files())
        tests = []
        for test, reached in alone.items():
            text = "; ".join(f"{_relative(s, root)}: {line_ranges(lines)}"
                             for s, lines in reached.items()) or "none (other tests reach "\
                "all of its lines)"
            tests.append(f"<tr><td>{html.escape(test)}</td><td>{html.escape(text)}</td></tr>")
        problems = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems)
        return _PAGE.format(title="Module coverage", body=(
            "<h1>Module coverage</h1><table><tr><th>file</th><th>lines</th><th>%</th><th></th>"
            f"</tr>{rows}</table><h2>Lines only one test reached</h2><table><tr><th>test</th>"
            f"<th>lines</th></tr>{''.join(tests)}</table>"
            + (f"<h2>Not counted</h2><ul>{problems}</ul>" if problems else "")))

    def source_page(self, source: Path, root: Path) -> str:
        try:
            text = source.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        hits, by = self.hits[source], self.reached_by.get(source, {})
        summary = self.file(source)
        rows = []
        for number, code in enumerate(text, start=1):
            count = hits.get(number)
            kind = "" if count is None else ("hit" if count else "missed")
            tests = ", ".join(sorted(by.get(number, ())))
            rows.append(f"<tr class=\"{kind}\" title=\"{html.escape(tests)}\"><td>{number}</td>"
                        f"<td>{'' if count is None else count}</td>"
                        f"<td><pre>{html.escape(code)}</pre></td></tr>")
        name = html.escape(str(_relative(source, root)))
        return _PAGE.format(title=name, body=(
            f"<p><a href=\"index.html\">all files</a></p><h1>{name}</h1>"
            f"<p>{summary.covered}/{summary.total} lines, {summary.percent:.0f} %: "
            "<span class=hit>reached</span> <span class=missed>never reached</span> "
            "(hover a line for the tests that reached it)</p>"
            f"<table class=source><tr><th>line</th><th>hits</th><th>source</th></tr>"
            f"{''.join(rows)}</table>"))


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 8px; text-align: left; }}
.source td {{ padding: 0 8px; font-family: monospace; }} pre {{ margin: 0; }}
.hit {{ background: #d6f5d6; }} .missed {{ background: #f9d0d0; }}
.bar {{ display: inline-block; width: 120px; height: 10px; background: #f9d0d0; }}
.bar span {{ display: block; height: 10px; background: #4caf50; }}
</style></head><body>{body}</body></html>
"""


def _rate(covered: int, total: int) -> str:
    return f"{covered / total:.4f}" if total else "0"


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def line_ranges(lines: list[int]) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9``."""
    spans: list[list[int]] = []
    for number in lines:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


@dataclass
class CoverageCollector:
    """A run's counters, test by test, across the run's VMs; turned into a report at the end
    (each test's counters read separately, so which test reached which line is known)."""

    counters: list[tuple[Counters, GcovRunner]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, counters: Counters, gcov: GcovRunner) -> None:
        self.counters.append((counters, gcov))

    def not_counted(self, why: str) -> None:
        if why not in self.problems:
            self.problems.append(why)

    def report(self) -> CoverageReport:
        report = CoverageReport(problems=list(self.problems))
        for counters, gcov in self.counters:
            try:
                report.add(counters.test, line_counts(counters, gcov))
            except (CoverageError, HarnessError, ValueError, KeyError, OSError) as err:
                report.problems.append(f"{counters.test}: the counters of {counters.source_dir} "
                                       f"could not be read: {err}")
        return report
