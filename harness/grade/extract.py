"""Safe unpacking of a submission: a folder, a .zip or a .tar.gz, into one target folder.

Nothing may land outside the target: absolute paths, ``..``, symlinks and hard links are
refused, as are devices and fifos; size and file count are bounded. A bad archive raises
:class:`UnsafeSubmission` with the reason, which becomes that student's result.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from harness.errors import ConfigurationError


class UnsafeSubmission(ConfigurationError, ValueError):
    """The submission cannot be unpacked safely (or at all); the message says why."""


SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def student_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeSubmission(f"absolute path in the archive: {name!r}")
    if ".." in path.parts or "\\" in name:
        raise UnsafeSubmission(f"path escaping the folder in the archive: {name!r}")
    return path


def _extract_zip(archive: Path, target: Path, max_bytes: int, max_files: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise UnsafeSubmission(f"too many files ({len(infos)} > {max_files})")
        total = sum(info.file_size for info in infos)
        if total > max_bytes:
            raise UnsafeSubmission(f"unpacks to {total} bytes, more than the {max_bytes} allowed")
        for info in infos:
            member = _safe_member(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeSubmission(f"symlink in the archive: {info.filename!r}")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeSubmission(f"special file in the archive: {info.filename!r}")
            destination = target.joinpath(*member.parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)


def _extract_tar(archive: Path, target: Path, max_bytes: int, max_files: int) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        if len(members) > max_files:
            raise UnsafeSubmission(f"too many files ({len(members)} > {max_files})")
        total = sum(m.size for m in members)
        if total > max_bytes:
            raise UnsafeSubmission(f"unpacks to {total} bytes, more than the {max_bytes} allowed")
        for member in members:
            _safe_member(member.name)
            if member.issym() or member.islnk():
                raise UnsafeSubmission(f"link in the archive: {member.name!r}")
            if not (member.isfile() or member.isdir()):
                raise UnsafeSubmission(f"special file in the archive: {member.name!r}")
        # The "data" filter re-checks all of the above inside the standard library.
        tf.extractall(target, filter="data")


def _copy_folder(source: Path, target: Path, max_bytes: int, max_files: int) -> None:
    root = source.resolve()
    files = [p for p in source.rglob("*")]
    if len(files) > max_files:
        raise UnsafeSubmission(f"too many files ({len(files)} > {max_files})")
    total = 0
    for path in files:
        rel = path.relative_to(source)
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise UnsafeSubmission(f"symlink pointing out of the submission: {rel}")
        destination = target / rel
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            total += path.stat().st_size
            if total > max_bytes:
                raise UnsafeSubmission(f"more than the {max_bytes} bytes allowed")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        else:
            raise UnsafeSubmission(f"special file in the submission: {rel}")


def extract(submission: Path, target: Path, max_bytes: int = 20 * 2**20,
            max_files: int = 200) -> Path:
    """Unpack into ``target`` (emptied first); return the folder holding the module's Makefile."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        if submission.is_dir():
            _copy_folder(submission, target, max_bytes, max_files)
        elif submission.name.endswith(".zip"):
            _extract_zip(submission, target, max_bytes, max_files)
        elif submission.name.endswith((".tar.gz", ".tgz", ".tar")):
            _extract_tar(submission, target, max_bytes, max_files)
        else:
            raise UnsafeSubmission(f"not a folder, .zip or .tar.gz: {submission.name}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(target, ignore_errors=True)
        raise UnsafeSubmission(f"the archive cannot be read: {err}") from err
    except UnsafeSubmission:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return module_root(target)


def module_root(folder: Path) -> Path:
    """The folder itself, or its single subfolder when the student packed one."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
