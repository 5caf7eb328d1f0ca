"""``harness grade``: unpack the submissions, run the assignment's tests in the guest, score.

Submissions already graded (``OUT/students/NAME/result.json``) are skipped unless ``regrade``.
The tests run as one pytest session with :mod:`harness.grade.plugin`; ``jobs > 1`` hands the
students to pytest-xdist workers, each with its own VM. Student code is only ever built and run
inside the guest: on the host it is unpacked and copied, never executed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.grade.extract import UnsafeSubmission, extract
from harness.grade.roster import Entry, find_submissions
from harness.grade.spec import Spec, late_penalty_percent, load_spec
from harness.paths import atomic_write
from harness.untrusted import one_line


@dataclass
class StudentResult:
    student: str  # the name as people read it (roster.Entry.name: escaped)
    score: float
    max_score: float
    status: str  # graded | rejected | incomplete
    reason: str = ""
    late_penalty_percent: float = 0.0
    warning_penalty: float = 0.0
    tests: list[dict] = field(default_factory=list)
    # spec `coverage: true`: per file of the student's, the lines the tests reached
    coverage: list[dict] = field(default_factory=list)
    key: str = ""  # roster.Entry.key: the folder under OUT/students (the name when plain)

    def __post_init__(self) -> None:
        self.key = self.key or self.student

    def to_dict(self) -> dict:
        return dict(vars(self))


def max_points(spec: Spec) -> dict[str, float]:
    """Points per test function of the assignment's test file, read by collecting it."""
    return json.loads(
        subprocess.run(
            [sys.executable, "-c", _COLLECT_POINTS, str(spec.tests)],
            capture_output=True, text=True, check=True,
        ).stdout
    )


_COLLECT_POINTS = """
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("assignment_tests", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
points = {}
for name, func in vars(module).items():
    if name.startswith("test") and callable(func):
        marks = [m for m in getattr(func, "pytestmark", []) if m.name == "points"]
        points[name] = float(marks[0].args[0]) if marks else 1.0
print(json.dumps(points))
"""


def score_student(entry: Entry | str, out: Path, spec: Spec, points: dict[str, float],
                  submitted: dt.datetime) -> StudentResult:
    """A student's result from their finished tests' records (``entry``: the roster's entry,
    or a plain name that is its own key)."""
    key, name = (entry, entry) if isinstance(entry, str) else (entry.key, entry.name)
    note = "" if isinstance(entry, str) else entry.note
    tests_dir = out / "students" / key / "tests"
    records = {p.stem: json.loads(p.read_text()) for p in sorted(tests_dir.glob("*.json"))}
    total = sum(points.values())
    if set(points) - set(records):
        missing = ", ".join(sorted(set(points) - set(records)))
        return StudentResult(name, 0.0, total, "incomplete", f"not run yet: {missing}",
                             tests=list(records.values()), key=key)
    earned = sum(r["earned"] for r in records.values())
    warnings = {(d["file"], d["line"], d["message"]) for r in records.values()
                for d in r.get("diagnostics", []) if d["severity"] == "warning"}
    warning_penalty = spec.warning_penalty * len(warnings) if spec.warnings == "penalize" else 0
    late = late_penalty_percent(spec, submitted)
    score = max(0.0, earned - warning_penalty) * (1 - late / 100)
    return StudentResult(name, round(score, 2), total, "graded", note,
                         late_penalty_percent=late, warning_penalty=warning_penalty,
                         tests=[records[t] for t in points], key=key)


def grade(submissions: Path, spec_path: Path, out: Path, jobs: int = 1, regrade: bool = False,
          vm_args: list[str] | None = None, log=None,
          vm_project: Path | None = None) -> list[StudentResult]:
    """Grade every submission; ``vm_project``: the folder whose VM to use (default: cwd)."""
    log = log or sys.stderr
    spec = load_spec(spec_path)
    out = out.resolve()
    (out / "students").mkdir(parents=True, exist_ok=True)
    points = max_points(spec)
    found, litter = find_submissions(submissions)
    for line in litter:
        print(f"harness grade: left out, not a submission: {line}", file=log)
    if not found:
        raise ValueError(f"{submissions}: no submissions (folders, .zip or .tar.gz) found")
    pending: dict[str, dict] = {}
    for entry in found:
        student_dir = out / "students" / entry.key
        if not regrade and not (student_dir / "result.json").is_file():
            # An interrupted run may have finished every test of this student already.
            recovered = score_student(entry, out, spec, points, _mtime_dt(entry.path))
            if recovered.status == "graded":
                atomic_write(student_dir / "result.json",
                              json.dumps(recovered.to_dict(), indent=1))
        if (student_dir / "result.json").is_file() and not regrade:
            print(f"harness grade: {entry.name}: already graded (use --regrade to redo)",
                  file=log)
            continue
        shutil.rmtree(student_dir / "tests", ignore_errors=True)
        (student_dir / "result.json").unlink(missing_ok=True)
        reason = _unpack(entry, out / "work" / entry.key, spec)
        if isinstance(reason, str):
            result = StudentResult(entry.name, 0.0, sum(points.values()), "rejected",
                                   "; ".join(filter(None, (reason, entry.note))), key=entry.key)
            atomic_write(student_dir / "result.json", json.dumps(result.to_dict(), indent=1))
            print(f"harness grade: {entry.name}: rejected: {reason}", file=log)
            continue
        pending[entry.key] = {"module_dir": str(reason), "name": entry.name}
    if pending:
        project = (vm_project or Path.cwd()).resolve()
        args = [f"--vm-project={project}", *spec.pytest_args(), *(vm_args or [])]
        if spec.coverage:
            args.append(f"--vm-coverage-dir={out / COVERAGE_DIR}")
        if _vm_running(project, log):
            args.append("--vm-reuse")  # someone's VM: use it from its clean snapshot, keep it
        _run_tests(spec, out, pending, jobs, args, log)
    results = []
    covered = student_coverage(out, pending) if spec.coverage and pending else {}
    for entry in found:
        result_file = out / "students" / entry.key / "result.json"
        if entry.key in pending:
            result = score_student(entry, out, spec, points, _mtime_dt(entry.path))
            result.coverage = covered.get(entry.key, [])
            if result.status == "graded":
                atomic_write(result_file, json.dumps(result.to_dict(), indent=1))
        elif result_file.is_file():
            result = StudentResult(**json.loads(result_file.read_text()))
        else:
            result = StudentResult(entry.name, 0.0, sum(points.values()), "incomplete",
                                   "no result was recorded", key=entry.key)
        results.append(result)
    from harness.grade.report import write_reports

    write_reports(results, spec, out)
    return results


COVERAGE_DIR = "coverage"


def student_coverage(out: Path, pending: dict[str, dict]) -> dict[str, list[dict]]:
    """Per student, the coverage of the files of their own module folder, from the grading
    run's coverage summaries (one per xdist worker); a file is named relative to the folder."""
    files = []
    problems = []
    for summary in sorted((out / COVERAGE_DIR).rglob("summary.json")):
        data = json.loads(summary.read_text())
        files += data["files"]
        problems += data["problems"]
    found: dict[str, list[dict]] = {}
    for name, entry in pending.items():
        folder = Path(entry["module_dir"]).resolve()
        for item in files:
            source = Path(item["source"]).resolve()
            if source.is_relative_to(folder):
                found.setdefault(name, []).append({**item, "source": str(source.relative_to(
                    folder))})
        if name not in found and problems:
            found[name] = [{"problem": problems[0]}]
    return found


def _unpack(entry: Entry, target: Path, spec: Spec) -> Path | str:
    """The module folder of one submission, or the reason it cannot be graded. This is the
    boundary between students: whatever one submission does to the unpacking, the others are
    graded, so an error nobody foresaw is that student's reason too (and says it is ours)."""
    try:
        return extract(entry.path, target, spec.max_archive_bytes, spec.max_files)
    except UnsafeSubmission as err:
        return one_line(str(err), 500)
    except Exception as err:  # noqa: BLE001 - see the docstring: one student, one row
        return one_line(f"the submission could not be unpacked ({type(err).__name__}: {err}); "
                        "this is a harness bug, please report it", 500)


def _vm_running(project: Path, log=None) -> bool:
    """Whether ``project``'s VM is running: someone's VM, which the grading run uses from its
    clean snapshot and leaves running. When that cannot be told it counts as running: a VM
    left up costs memory, a VM taken away loses someone's work."""
    if not (project / ".harness").is_dir():
        return False
    from harness.boxes import load_catalogue
    from harness.vm import VM, VMSettings

    try:
        box = load_catalogue(project_dir=project).get(None)
        return VM(VMSettings(box=box), project_dir=project).is_running()
    except (HarnessError, OSError) as err:
        print(f"harness grade: cannot tell whether the VM of {project} is running ({err}); "
              "it is used as a running one and left running", file=log or sys.stderr)
        return True


def _mtime_dt(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.lstat().st_mtime, tz=dt.timezone.utc)


def _run_tests(spec: Spec, out: Path, pending: dict[str, dict], jobs: int,
               vm_args: list[str], log) -> None:
    manifest = out / "manifest.json"
    atomic_write(manifest, json.dumps({"spec": str(spec.path), "out": str(out),
                                        "students": pending}, indent=1))
    # An ini file of its own: the grading session must not pick up a project's pytest settings.
    ini = out / "pytest.ini"
    atomic_write(ini, "[pytest]\n")
    argv = [sys.executable, "-m", "pytest", str(spec.tests), "-p", "harness.grade.plugin",
            # The tests' own folder as rootdir: ids read test_x.py::test_y[student].
            f"--grade-manifest={manifest}", "-c", str(ini), f"--rootdir={spec.tests.parent}",
            "-p", "no:cacheprovider", "-v", *vm_args]
    if jobs > 1:
        argv += ["-n", str(jobs), "--dist", "loadgroup"]
    print(f"harness grade: {len(pending)} submission(s), {jobs} VM(s): {' '.join(argv)}",
          file=log, flush=True)
    env = {**os.environ, "HARNESS_GRADE_OUT": str(out)}
    # Progress: pytest's own verbose lines, one per test and student.
    subprocess.run(argv, cwd=out, env=env, check=False, stdout=log, stderr=subprocess.STDOUT)
