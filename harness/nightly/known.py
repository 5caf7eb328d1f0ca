"""Known failures: the YAML file of failures a run expects, and which entry a failure matches.

A nightly's known failures are data, kept beside the tests (as kdevops keeps its expunge lists):
each entry names a test (a glob over pytest's test ids), optionally a box (a glob over box
names), a regular expression searched in the crash title or the failure message, and why it is
known (text or a link). A failure that matches an entry is *known*: it does not fail the run.
An entry whose test passes is *fixed*: time to delete it. Everything else is news.

Example::

    - test: "tests/vm/test_crashes.py::test_race*"
      box: "debian-12-debug"
      match: "KASAN: .* in race_worker"
      reason: https://bugs.example/123
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.schema import check_keys

ENTRY_SCHEMA = {"test": (str, True), "box": (str, False), "match": (str, False),
                "reason": (str, True)}


class KnownFailuresError(HarnessError):
    """The known-failures file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class KnownFailure:
    test: str  # glob over test ids, e.g. "tests/vm/test_x.py::test_y*"
    reason: str
    box: str | None = None  # glob over box names; None: any box
    match: re.Pattern[str] | None = None  # searched in the crash title or failure message
    where: str = ""  # "file:line", for reports

    def covers(self, test_id: str, box: str | None) -> bool:
        """Whether this entry is about that test on that box (whatever its outcome)."""
        if not fnmatch.fnmatchcase(test_id, self.test):
            return False
        return self.box is None or (box is not None and fnmatch.fnmatchcase(box, self.box))

    def explains(self, test_id: str, box: str | None, failure: str) -> bool:
        """Whether this entry explains that failure (its crash title or message)."""
        return self.covers(test_id, box) and (
            self.match is None or self.match.search(failure) is not None)

    def describe(self) -> str:
        return f"known failure ({self.where}): {self.reason}"


@dataclass(frozen=True)
class KnownFailures:
    entries: tuple[KnownFailure, ...] = ()

    def explaining(self, test_id: str, box: str | None, failures: list[str]) -> KnownFailure | None:
        """The first entry that explains one of the failure's texts (titles, message)."""
        for entry in self.entries:
            if any(entry.explains(test_id, box, text) for text in failures):
                return entry
        return None

    def covering(self, test_id: str, box: str | None) -> KnownFailure | None:
        return next((e for e in self.entries if e.covers(test_id, box)), None)


def load_known_failures(path: Path) -> KnownFailures:
    """The entries of a known-failures file; a malformed one is an error naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise KnownFailuresError(f"{path}: cannot read the known-failures file: {err}") from err
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        raise KnownFailuresError(f"{path}: not valid YAML: {err}") from err
    if root is None:
        return KnownFailures()
    if not isinstance(root, yaml.SequenceNode):
        raise KnownFailuresError(
            f"{path}:{root.start_mark.line + 1}: expected a list of entries "
            "(- test: GLOB, match: REGEX, reason: TEXT)")
    entries = []
    for node in root.value:
        where = f"{path}:{node.start_mark.line + 1}"
        data = yaml.safe_load(yaml.serialize(node))
        check_keys(where, data, ENTRY_SCHEMA, KnownFailuresError)
        try:
            pattern = re.compile(data["match"]) if "match" in data else None
        except re.error as err:
            raise KnownFailuresError(f"{where}: match {data['match']!r} is not a regular "
                                     f"expression: {err}") from err
        if not data["test"].strip():
            raise KnownFailuresError(f"{where}: test is empty; give a test id or a glob")
        entries.append(KnownFailure(data["test"], data["reason"], data.get("box"), pattern,
                                    where))
    return KnownFailures(tuple(entries))
