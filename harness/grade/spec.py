"""The assignment spec: what to build, which tests are worth what, the limits, the late policy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigurationError
from harness.leaks import LEAK_CHECK_MODES
from harness.schema import Schema, check_keys


class SpecError(ConfigurationError, ValueError):
    """The spec is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class LatePolicy:
    deadline: dt.datetime
    penalty_percent_per_day: float = 10.0
    max_days: int = 7  # later than this: zero


@dataclass(frozen=True)
class Spec:
    path: Path
    assignment: str
    module: str
    required_files: tuple[str, ...]
    tests: Path
    warnings: str = "allow"  # allow | penalize | error
    warning_penalty: float = 1.0
    build_timeout_s: float = 300.0
    test_timeout_s: float = 120.0
    student_timeout_s: float = 900.0
    max_archive_bytes: int = 20 * 1024 * 1024
    max_files: int = 200
    late: LatePolicy | None = None
    box: str | None = None  # the box the students' modules run on (e.g. debian-12-debug)
    leak_check: str | None = None  # harness.leaks.LEAK_CHECK_MODES; None: the harness's default
    coverage: bool = False  # each student's lines reached by the tests (needs a gcov kernel)

    @property
    def extra_cflags(self) -> str:
        return "-Werror" if self.warnings == "error" else ""

    def pytest_args(self) -> list[str]:
        """The spec's choices about the kernel as options of the grading run (options given
        on the command line come after them and win)."""
        args = [f"--vm-box={self.box}"] if self.box else []
        args += ["--vm-coverage"] if self.coverage else []
        return args + ([f"--vm-leak-check={self.leak_check}"] if self.leak_check else [])


_TOP: Schema = {
    "assignment": (str, True), "module": (str, True), "required_files": (list, True),
    "tests": (str, True), "build": (dict, False), "time_limits": (dict, False),
    "limits": (dict, False), "late": (dict, False), "kernel": (dict, False),
    "coverage": (bool, False),
}
_CHOICES = {"warnings": ("allow", "penalize", "error"), "leak_check": LEAK_CHECK_MODES}
_KERNEL: Schema = {"box": (str, False), "leak_check": (str, False)}
_BUILD: Schema = {"warnings": (str, False), "warning_penalty": ((int, float), False)}
_TIME = {"build_s": ((int, float), False), "test_s": ((int, float), False),
         "student_s": ((int, float), False)}
_LIMITS = {"max_archive_mb": ((int, float), False), "max_files": (int, False)}
_LATE = {"deadline": ((str, dt.datetime), True), "penalty_percent_per_day": ((int, float), False),
         "max_days": (int, False)}


def _check(where: str, data: Any, schema: Schema) -> None:
    check_keys(where, data, schema, SpecError, _CHOICES)


def load_spec(path: Path) -> Spec:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    where = str(path)
    _check(where, data, _TOP)
    build = data.get("build", {})
    _check(f"{where}: build", build, _BUILD)
    times = data.get("time_limits", {})
    _check(f"{where}: time_limits", times, _TIME)
    limits = data.get("limits", {})
    _check(f"{where}: limits", limits, _LIMITS)
    kernel = data.get("kernel", {})
    _check(f"{where}: kernel", kernel, _KERNEL)
    late = None
    if "late" in data:
        _check(f"{where}: late", data["late"], _LATE)
        deadline = data["late"]["deadline"]
        try:
            deadline = deadline if isinstance(deadline, dt.datetime) else \
                dt.datetime.fromisoformat(deadline)
        except ValueError as err:
            raise SpecError(f"{where}: late: key 'deadline' is not an ISO date-time") from err
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=dt.timezone.utc)
        late = LatePolicy(deadline, float(data["late"].get("penalty_percent_per_day", 10)),
                          int(data["late"].get("max_days", 7)))
    if not all(isinstance(f, str) for f in data["required_files"]):
        raise SpecError(f"{where}: key 'required_files' must be a list of file names")
    tests = (path.parent / data["tests"]).resolve()
    if not tests.is_file():
        raise SpecError(f"{where}: key 'tests': {tests} does not exist")
    return Spec(
        path=path.resolve(), assignment=data["assignment"], module=data["module"],
        required_files=tuple(data["required_files"]), tests=tests,
        warnings=build.get("warnings", "allow"),
        warning_penalty=float(build.get("warning_penalty", 1.0)),
        build_timeout_s=float(times.get("build_s", 300)),
        test_timeout_s=float(times.get("test_s", 120)),
        student_timeout_s=float(times.get("student_s", 900)),
        max_archive_bytes=int(float(limits.get("max_archive_mb", 20)) * 1024 * 1024),
        max_files=int(limits.get("max_files", 200)),
        late=late,
        box=kernel.get("box"),
        leak_check=kernel.get("leak_check"),
        coverage=bool(data.get("coverage", False)),
    )


def late_penalty_percent(spec: Spec, submitted: dt.datetime) -> float:
    if spec.late is None or submitted <= spec.late.deadline:
        return 0.0
    days = -(-(submitted - spec.late.deadline).total_seconds() // 86400)  # started days
    if days > spec.late.max_days:
        return 100.0
    return min(100.0, days * spec.late.penalty_percent_per_day)
