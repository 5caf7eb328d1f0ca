"""The history of runs: results read from JUnit XML (and matrix.json), kept in SQLite.

One row per test result, one per run; a run is identified by the digest of the file it came
from, so adding the same file twice adds nothing. Crash titles are kept as printed and as a
normalized key (:func:`normalize_title`: no addresses, numbers, CPU or PID, no compiler
suffixes such as ``.isra.0``), so one bug is one key across runs, kernels and boxes, as the
kernel test robot and KCIDB reduce an oops to one id.

The schema has a version (SQLite's ``user_version``) and a list of migrations; a database of a
newer version, or a file that is not this database, is refused with the reason, never
rewritten. Each run is added in one transaction: a process killed while adding loses that run
only.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import HarnessError
from harness.untrusted import one_line

OUTCOMES = ("passed", "failed", "error", "skipped", "known", "xfailed", "flaky",
            "build-failed")
FAILING = ("failed", "error", "build-failed")
MESSAGE_LIMIT = 300
TITLE_LIMIT = 300

# Each entry takes the schema from the version before it (index + 1 is the version it makes).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,  -- of the file the run came from
        started TEXT NOT NULL,        -- ISO 8601, UTC
        commit_id TEXT,
        source TEXT NOT NULL          -- the file's name
    );
    CREATE TABLE results (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        test TEXT NOT NULL,
        box TEXT,
        kernel TEXT,
        outcome TEXT NOT NULL,
        title TEXT,                   -- the crash title as printed
        title_key TEXT,               -- normalized: one bug, one key
        duration REAL
    );
    CREATE INDEX results_by_run ON results(run_id);
    CREATE INDEX results_by_test ON results(test);
    CREATE INDEX results_by_title ON results(title_key);
    """,
    # 2: the failure's first line, for the dashboard's cells and "new failures".
    "ALTER TABLE results ADD COLUMN message TEXT;",
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(HarnessError):
    """A results file or database that cannot be used; the message says why."""


# Title normalization, in order: what differs between two sightings of one bug.
_NORMALIZE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\+0x[0-9a-f]+(/0x[0-9a-f]+)?"), ""),  # function+0x1c/0x40
    (re.compile(r"\.(isra|constprop|part|llvm|lto_priv)\.\d+|\.cold\b"), ""),
    (re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,16}\b", re.IGNORECASE), "ADDR"),
    (re.compile(r"\bCPU#?\s*\d+", re.IGNORECASE), "CPU#N"),
    (re.compile(r"\b(PID|pid)[:=]?\s*\d+"), "PID N"),
    (re.compile(r"\b\d+(\.\d+)?(s|ms|us)?\b"), "N"),
    (re.compile(r"\s+"), " "),
)


def normalize_title(title: str) -> str:
    """The key of a crash title: the same for two sightings of one bug."""
    for pattern, replacement in _NORMALIZE:
        title = pattern.sub(replacement, title)
    return title.strip()


@dataclass
class Result:
    test: str
    outcome: str
    box: str | None = None
    kernel: str | None = None
    title: str | None = None
    duration: float | None = None
    message: str | None = None
    title_key: str | None = None  # normalize_title(title): set when stored, read back


@dataclass
class Run:
    source: str
    digest: str
    started: str
    results: list[Result] = field(default_factory=list)
    commit: str | None = None


def _outcome(case: ET.Element, properties: dict[str, str]) -> tuple[str, str | None]:
    """A JUnit testcase's outcome and its message."""
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        found = case.find(tag)
        if found is not None:
            return outcome, found.get("message") or (found.text or "").strip()
    skipped = case.find("skipped")
    if skipped is not None:
        message = skipped.get("message") or ""
        if skipped.get("type") == "pytest.xfail":
            return ("known" if message.startswith("known failure (") else "xfailed"), message
        return "skipped", message
    if "harness_flaky" in properties:
        return "flaky", properties["harness_flaky"]
    return "passed", None


def _first_line(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    if not text:
        return None
    return one_line(text.strip().splitlines()[0] if text.strip() else "", limit)


def read_junit(path: Path, data: bytes) -> Run:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise HistoryError(f"{path}: not JUnit XML ({err}); nothing added") from err
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if root.tag not in ("testsuite", "testsuites") or not suites:
        raise HistoryError(f"{path}: not JUnit XML (its root is <{root.tag}>, not <testsuites> "
                           "or <testsuite>); nothing added")
    stamp = suites[0].get("timestamp")
    run = Run(str(path), hashlib.sha256(data).hexdigest(), _utc(stamp) if stamp else "")
    for suite in suites:
        for case in suite.iter("testcase"):
            properties = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
            outcome, message = _outcome(case, properties)
            title = properties.get("crash_title")
            classname, name = case.get("classname", ""), case.get("name", "")
            try:
                duration = float(case.get("time", ""))
            except ValueError:
                duration = None
            run.results.append(Result(
                test=f"{classname}::{name}" if classname else name, outcome=outcome,
                box=properties.get("box"), kernel=properties.get("kernel"),
                title=one_line(title, TITLE_LIMIT) if title else None, duration=duration,
                message=_first_line(message)))
    return run


def read_matrix(path: Path, data: bytes) -> Run:
    """A kernel matrix's results (``matrix.json``: boxes and results of test x box)."""
    try:
        matrix = json.loads(data)
        rows = matrix["results"]
        results = [Result(test=str(r["test"]), outcome=str(r["outcome"]), box=r.get("box"),
                          kernel=r.get("kernel"), title=r.get("title"),
                          message=r.get("title")) for r in rows]
    except (ValueError, KeyError, TypeError) as err:
        raise HistoryError(f"{path}: not a matrix.json ({err}); nothing added") from err
    bad = sorted({r.outcome for r in results} - set(OUTCOMES))
    if bad:
        raise HistoryError(f"{path}: unknown outcome(s) {', '.join(bad)}; nothing added")
    return Run(str(path), hashlib.sha256(data).hexdigest(), str(matrix.get("started", "")),
               results)


def read_results(path: Path) -> Run:
    """A run from a JUnit XML file or a matrix.json."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HistoryError(f"{path}: cannot read it: {err}") from err
    run = read_matrix(path, data) if path.suffix == ".json" else read_junit(path, data)
    if not run.started:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        run.started = mtime.isoformat(timespec="seconds")
    return run


def read_run(paths: list[Path]) -> Run:
    """One run from its files (a nightly's shards and rows, each a JUnit XML file, and a
    matrix.json): all of them readable, or an error and nothing."""
    parts = [read_results(path) for path in paths]
    if len(parts) == 1:
        return parts[0]
    digest = hashlib.sha256("".join(sorted(p.digest for p in parts)).encode()).hexdigest()
    return Run(", ".join(p.source for p in parts), digest, min(p.started for p in parts),
               [result for part in parts for result in part.results])


def _utc(stamp: str) -> str:
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.astimezone()  # pytest writes local time without a zone
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass
class StoredRun:
    id: int
    started: str
    commit: str | None
    source: str


class History:
    """The database: open (creating or migrating it), add runs, read them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise HistoryError(f"{path}: not a harness history database ({err}); give "
                               "another --db") from err

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path}: schema version {version} is newer than this harness's "
                f"({SCHEMA_VERSION}); upgrade harness, or give another --db")
        if version == 0:
            tables = [row[0] for row in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            if tables:
                raise HistoryError(f"{self.path}: an SQLite database, but not a harness "
                                   f"history (it has tables {', '.join(tables)}); nothing "
                                   "changed: give another --db")
        for number in range(version, SCHEMA_VERSION):
            with self._transaction() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def add(self, run: Run) -> int | None:
        """Store the run; its id, or None when this file's run is already stored."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE digest = ?", (run.digest,)).fetchone():
                return None
            cursor = db.execute(
                "INSERT INTO runs (digest, started, commit_id, source) VALUES (?, ?, ?, ?)",
                (run.digest, run.started, run.commit, run.source))
            run_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO results (run_id, test, box, kernel, outcome, title, title_key, "
                "duration, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.test, r.box, r.kernel, r.outcome, r.title,
                  normalize_title(r.title) if r.title else None, r.duration, r.message)
                 for r in run.results])
        return run_id

    def runs(self) -> list[StoredRun]:
        """Every run, oldest first."""
        with closing(self.db.execute(
                "SELECT id, started, commit_id, source FROM runs ORDER BY started, id")) as rows:
            return [StoredRun(*row) for row in rows]

    def results(self) -> dict[int, list[Result]]:
        """Every run's results, by run id."""
        found: dict[int, list[Result]] = {}
        with closing(self.db.execute(
                "SELECT run_id, test, outcome, box, kernel, title, duration, message, title_key "
                "FROM results ORDER BY rowid")) as rows:
            for run_id, *values in rows:
                found.setdefault(run_id, []).append(Result(*values))
        return found
