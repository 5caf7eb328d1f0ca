"""Who handed in what: every entry of a submissions folder becomes one row of the gradebook.

A submission's name is the student's, and the student chose it: an LMS export's
``José García (late)``, a name with quotes, ``$``, a newline, bytes that are not UTF-8, a
leading ``-`` or ``=``. The name is only ever *shown* (escaped, :func:`display_name`); what the
grader uses for folders, pytest ids and build paths is the :class:`Entry`'s ``key``: the name
itself when it is plain, else a readable ASCII part and a hash of the name's bytes. Keys are
unique in a run: two entries that would share one (``alice/`` and ``alice.zip``, or a folder
named like another student's generated key) are both graded, each under its own key, and
each row says so. Nothing in the folder is passed over in silence: an entry that is not a
folder, .zip or .tar.gz gets a row saying why; only the litter of file managers is left out,
and the log names it.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from harness.untrusted import display_name

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
# What file managers and archivers leave beside the submissions: never a student's.
LITTER = {".DS_Store": "macOS folder settings", "__MACOSX": "macOS archive metadata",
          "Thumbs.db": "Windows thumbnails", "desktop.ini": "Windows folder settings",
          ".git": "a git repository's data", ".harness": "the harness's own state"}
_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Entry:
    key: str  # folders, pytest ids, build paths: [A-Za-z0-9_.-], unique in the run
    name: str  # the student's name as people read it (escaped)
    path: Path
    note: str = ""  # said in the student's row (a shared name)


def student_name(path: Path) -> str:
    """The student's name of a submission: the entry's name without an archive suffix."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def student_key(name: str) -> str:
    """A key safe anywhere for a student's name: the name when it is plain ASCII (letters,
    digits, ``_.-``, not starting with ``-`` or ``.``, at most 64 characters), else its ASCII
    letters and digits and an 8-digit hash of its bytes (``Jose_Garcia_late-3f2a19c0``)."""
    if _PLAIN_KEY.fullmatch(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    readable = _UNSAFE.sub("_", ascii_name).strip("._-")[:40] or "student"
    return f"{readable}-{hashlib.sha256(os.fsencode(name)).hexdigest()[:8]}"


def find_submissions(folder: Path) -> tuple[list[Entry], list[str]]:
    """The entries of ``folder`` as gradebook rows, in a stable order, and the litter left out
    (one line each, for the log)."""
    entries, litter = [], []
    for path in sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name)):
        if path.name in LITTER or path.name.startswith("._"):
            why = LITTER.get(path.name, "macOS resource fork")
            litter.append(f"{display_name(path.name)} ({why})")
            continue
        entries.append(path)
    by_name: dict[str, list[Path]] = {}
    for path in entries:
        by_name.setdefault(student_name(path), []).append(path)
    found: list[Entry] = []
    for name, paths in by_name.items():
        if len(paths) == 1:
            found.append(Entry(student_key(name), display_name(name), paths[0]))
            continue
        shown = ", ".join(display_name(p.name) for p in paths)
        for path in paths:  # each under its whole entry name: alice and alice.zip
            found.append(Entry(student_key(path.name), display_name(path.name), path,
                               f"{len(paths)} submissions for {display_name(name)} ({shown}): "
                               "each graded under its own name"))
    return _unique(found), litter


def _unique(entries: list[Entry]) -> list[Entry]:
    """Keys made unique: a name chosen to equal another's key must not share its folder."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.key] = counts.get(entry.key, 0) + 1
    used: set[str] = {entry.key for entry in entries if counts[entry.key] == 1}
    unique = []
    for entry in entries:
        if counts[entry.key] == 1:
            unique.append(entry)
            continue
        number = 2
        key = entry.key
        while key in used:
            key = f"{entry.key}-{number}"
            number += 1
        used.add(key)
        note = (entry.note + "; " if entry.note else "") + \
            f"another submission's name gives the same folder name: graded as {key}"
        unique.append(Entry(key, entry.name, entry.path, note))
    return unique
