"""What a module, its Makefile or a student controls, made safe where it lands.

A kernel line, a build log, a file name inside debug information, a submission's name: any of
them can hold any byte, be of any length and name any path. Three rules, one place:

- **Text is visible.** :func:`visible` keeps printable text as it is and writes everything else
  as an escape a person can read (``\\x01``, ``\\xe9`` for a byte that is not UTF-8): no raw
  control character, no lone surrogate, nothing XML 1.0 or a strict JSON reader refuses.
- **Sizes are bounded.** :func:`capped` and :func:`capped_list` keep the part people read
  first and say how much more there was (``... (N more characters not shown)``).
- **Paths stay inside.** :func:`confined_file` turns a name from debug information into a file
  of one folder, or nothing: no absolute path, no ``..``, no symbolic link on the way, and
  :func:`read_source_line` reads at most a bounded prefix of it.
- **Programs reading it see nothing else.** :func:`run_on_untrusted` runs a host program
  (binutils on a student's ``.ko``) where it sees the host's programs and that one file: no
  other file, no environment, no network, a minute and 2 GiB at most. A parser bug that the
  file's author knows how to trigger then reads nothing worth printing into their result.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

# Characters written as escapes: C0 controls but tab and newline, DEL and C1 controls, lone
# surrogates (undecodable bytes of a file name, as Python's surrogateescape keeps them) and
# the two noncharacters XML 1.0 forbids.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LINE_BREAKS = re.compile("[\n\t]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: str, limit: int | None = None) -> str:
    """``text`` with every character a reader or a parser could trip on escaped; ``limit``:
    at most that many characters (see :func:`capped`)."""
    text = _INVISIBLE.sub(_escape, text)
    return capped(text, limit) if limit is not None else text


def one_line(text: str, limit: int | None = None) -> str:
    """:func:`visible`, with newlines and tabs escaped too: a name or a table cell."""
    text = _LINE_BREAKS.sub(lambda m: "\\n" if m.group() == "\n" else "\\t", visible(text))
    return capped(text, limit) if limit is not None else text


def capped(text: str, limit: int, keep: str = "head") -> str:
    """At most ``limit`` characters of ``text`` (its start, or with ``keep="tail"`` its end),
    saying how many more there were."""
    if len(text) <= limit:
        return text
    more = f"... ({len(text) - limit} more characters not shown)"
    return text[:limit] + more if keep == "head" else more + text[-limit:]


def capped_list(items: Sequence, limit: int, noun: str = "items") -> list:
    """The first ``limit`` items, then a string saying how many more there were."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"... ({len(items) - limit} more {noun} not shown)"]


def display_name(name: str) -> str:
    """A file name as people should see it: undecodable bytes, newlines and control characters
    escaped, at most 300 characters."""
    return one_line(name, 300)


def confined_file(root: Path, name: str) -> Path | None:
    """The regular file ``name`` (relative, as debug information names it) inside ``root``,
    reached without following any symbolic link; None when the name is absolute, climbs out
    with ``..``, passes a link, or is not a regular file there."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts or "\0" in name:
        return None
    try:
        top = root.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    here = top
    for index, part in enumerate(parts):
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except (OSError, ValueError):
            return None
        last = index == len(parts) - 1
        if stat.S_ISLNK(mode) or (not last and not stat.S_ISDIR(mode)) or \
                (last and not stat.S_ISREG(mode)):
            return None
    return here


def find_confined(roots: Sequence[Path], name: str) -> Path | None:
    """The file a debug-information path names in one of ``roots``, matched by its trailing
    parts (the build ran at another path: ``/tmp/harness/x-1a2b/llist.c`` is ``llist.c`` of the
    host folder), never outside them; None when there is none."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None  # a name that climbs is never a file of the build's own folder
    for root in roots:
        for depth in range(len(parts), 0, -1):
            found = confined_file(root, "/".join(parts[-depth:]))
            if found is not None:
                return found
    return None


MAX_SOURCE_BYTES = 4 << 20  # a source file larger than this is not a module's source
MAX_SOURCE_LINE = 500  # characters of one source line shown in a report


def read_source_line(path: Path, line: int) -> str | None:
    """Line ``line`` (1-based) of a file found by :func:`confined_file`, made visible and
    bounded; the file is opened without following a link and read up to a size cap."""
    if line < 1:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(MAX_SOURCE_BYTES)
    lines = data.decode("utf-8", errors="surrogateescape").splitlines()
    return visible(lines[line - 1], MAX_SOURCE_LINE) if line <= len(lines) else None


# The environment a sandbox is started with: bubblewrap's own process is the sandbox's pid 1,
# and its /proc/1/environ is readable inside (--clearenv empties only the command's).
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
UNTRUSTED_FILE = "{untrusted file}"  # where the file goes in run_on_untrusted's command line
_INSIDE = "/untrusted/file"  # its path in the sandbox (its own name is untrusted too)
_INSIDE_FOLDER = "/untrusted/folder"
_LIMITS = ["prlimit", f"--as={2 << 30}", "--cpu=60", "--fsize=0", "--core=0", "--"]
# The host's programs and libraries, read-only, and nothing else of the host.
_SANDBOX = [
    "bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind-try", "/lib", "/lib",
    "--ro-bind-try", "/lib64", "/lib64", "--ro-bind-try", "/bin", "/bin",
    "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
    "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
    "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LC_ALL", "C",
]


@functools.cache
def sandbox_available() -> bool:
    """Whether bubblewrap can make :func:`run_on_untrusted`'s sandbox on this host (it needs
    root or unprivileged user namespaces)."""
    if shutil.which("bwrap") is None:
        return False
    try:
        return subprocess.run([*_SANDBOX, "true"], capture_output=True, timeout=30,
                              check=False, env=CLEAN_ENV).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run_on_untrusted(argv: Sequence[str], file: Path, timeout: float = 60.0) -> str:
    """The standard output of ``argv`` (with :data:`UNTRUSTED_FILE` for the file) run on a file
    someone else wrote, confined as the module docstring says; "" when it fails or runs out
    of time. Without bubblewrap (see :func:`sandbox_available`) only the limits hold."""
    done = untrusted_process(argv, file, timeout)
    return done.stdout if done is not None else ""


def untrusted_process(argv: Sequence[str], path: Path, timeout: float = 60.0
                      ) -> subprocess.CompletedProcess[str] | None:
    """:func:`run_on_untrusted`'s process, whole (None when it ran out of time). ``path`` may
    be a folder: the program then runs in it, and sees its files only."""
    folder = path.is_dir()
    inside, where = (_INSIDE_FOLDER, ["--chdir", _INSIDE_FOLDER]) if folder else (_INSIDE, [])
    sandbox: list[str] = []
    if sandbox_available():
        sandbox = [*_SANDBOX, "--ro-bind", str(path), inside, *where]
    else:
        inside = str(path)
    command = [inside if arg == UNTRUSTED_FILE else arg for arg in argv]
    try:
        return subprocess.run([*_LIMITS, *sandbox, *command], capture_output=True, text=True,
                              errors="surrogateescape", timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env=CLEAN_ENV,
                              cwd=path if folder and not sandbox else None)
    except subprocess.TimeoutExpired:
        return None
