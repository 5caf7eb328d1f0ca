"""Safe unpacking of a submission: a folder, a .zip or a .tar.gz, into one target folder.

Nothing may land outside the target: absolute paths, ``..``, symlinks and hard links are
refused, as are devices and fifos; size and file count are bounded. A bad archive raises
:class:`UnsafeSubmission` with the reason, which becomes that student's result.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from harness.errors import ConfigurationError
from harness.untrusted import display_name, one_line


class UnsafeSubmission(ConfigurationError, ValueError):
    """The submission cannot be unpacked safely (or at all); the message says why."""


# Raw control characters or undecodable bytes (kept as lone surrogates) in a member's name.
_UNREADABLE_NAME = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


# The compression methods Python's zipfile reads; anything else (AES, zstd, PPMd) is named.
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0


def _safe_member(name: str) -> PurePosixPath:
    if _UNREADABLE_NAME.search(name):
        raise UnsafeSubmission(f"a file name that is not valid UTF-8 or holds control "
                               f"characters: {display_name(name)} (rename the file)")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeSubmission(f"absolute path in the archive: {display_name(name)}")
    if ".." in path.parts or "\\" in name:
        raise UnsafeSubmission(f"path escaping the folder in the archive: '{display_name(name)}'")
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
            if info.flag_bits & _ZIP_ENCRYPTED:
                raise UnsafeSubmission("the zip is encrypted (password-protected): submit it "
                                       "without a password")
            if info.compress_type not in _ZIP_METHODS:
                raise UnsafeSubmission(
                    f"the zip uses compression method {info.compress_type}, which the grader "
                    f"cannot read: make it with zip's default (deflate)")
        for info in infos:
            member = _safe_member(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeSubmission(f"symlink in the archive: {display_name(info.filename)}")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeSubmission(f"special file in the archive: "
                                       f"{display_name(info.filename)}")
            destination = target.joinpath(*member.parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)


def _extract_tar(archive: Path, target: Path, max_bytes: int, max_files: int) -> None:
    with tarfile.open(archive) as tf:
        # Read a header at a time, and stop at the first one over a limit: a small .tar.gz
        # can hold millions of headers, which tarfile's getmembers() would all keep.
        total = 0
        for count, member in enumerate(tf, start=1):
            if count > max_files:
                raise UnsafeSubmission(f"too many files (more than {max_files})")
            total += member.size
            if total > max_bytes:
                raise UnsafeSubmission(f"unpacks to more than the {max_bytes} bytes allowed")
            _safe_member(member.name)
            if member.issym() or member.islnk():
                raise UnsafeSubmission(f"link in the archive: {display_name(member.name)}")
            if not (member.isfile() or member.isdir()):
                raise UnsafeSubmission(f"special file in the archive: "
                                       f"{display_name(member.name)}")
        # The "data" filter re-checks all of the above inside the standard library.
        tf.extractall(target, filter="data")


def _copy_folder(source: Path, target: Path, max_bytes: int, max_files: int) -> None:
    """A folder's regular files and subfolders; a link is taken as the file it names only when
    that file is inside the folder (a link to a folder, a loop or a link out is refused)."""
    root = source.resolve()
    count = total = 0
    for folder, dirs, files in os.walk(source, followlinks=False, onerror=_walk_error):
        here = Path(folder)
        for name in sorted(dirs) + sorted(files):
            path = here / name
            rel = path.relative_to(source)
            _safe_member(str(rel))
            count += 1
            if count > max_files:
                raise UnsafeSubmission(f"more than the {max_files} files allowed")
            real = path
            if path.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError) as err:
                    raise UnsafeSubmission(f"a symlink that leads nowhere or in a loop: "
                                           f"{display_name(str(rel))}") from err
                if not real.is_relative_to(root) or not real.is_file():
                    raise UnsafeSubmission(f"symlink pointing out of the submission or to a "
                                           f"folder: {display_name(str(rel))}")
            destination = target / rel
            mode = real.lstat().st_mode
            if stat.S_ISDIR(mode):
                destination.mkdir(parents=True, exist_ok=True)
            elif stat.S_ISREG(mode):
                total += real.stat().st_size
                if total > max_bytes:
                    raise UnsafeSubmission(f"more than the {max_bytes} bytes allowed")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(real, destination)
            else:
                raise UnsafeSubmission(f"special file in the submission: "
                                       f"{display_name(str(rel))}")


def _walk_error(err: OSError) -> None:
    raise UnsafeSubmission(f"a folder of the submission cannot be read: "
                           f"{display_name(str(err.filename))}") from err


def extract(submission: Path, target: Path, max_bytes: int = 20 * 2**20,
            max_files: int = 200) -> Path:
    """Unpack into ``target`` (emptied first); return the folder holding the module's Makefile."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        name = submission.name  # a link's own name says what kind it is
        size = submission.stat().st_size if submission.is_file() else 0
        if size > max_bytes:
            # An archive's own size bounds what reading its index costs.
            raise UnsafeSubmission(f"the archive is {size} bytes, more than the {max_bytes} "
                                   "allowed")
        if submission.is_symlink():
            # The submissions folder is the teacher's: a link in it (a folder assembled from
            # others) is followed; links inside a submission stay confined to it.
            try:
                submission = submission.resolve(strict=True)
            except (OSError, RuntimeError) as err:
                raise UnsafeSubmission("the submission is a symbolic link that leads nowhere "
                                       "(or in a loop)") from err
        if submission.is_dir():
            _copy_folder(submission, target, max_bytes, max_files)
        elif name.endswith(".zip"):
            _extract_zip(submission, target, max_bytes, max_files)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            _extract_tar(submission, target, max_bytes, max_files)
        else:
            raise UnsafeSubmission(f"not a folder, .zip or .tar.gz: {display_name(name)}")
    except UnsafeSubmission:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError,
            NotImplementedError, ValueError, zlib.error, lzma.LZMAError) as err:
        # RuntimeError: a zip member encrypted after all; NotImplementedError: a method
        # zipfile lacks; ValueError: a corrupt header field.
        shutil.rmtree(target, ignore_errors=True)
        raise UnsafeSubmission(f"the archive cannot be read: {one_line(str(err), 300)}") \
            from err
    return module_root(target)


def module_root(folder: Path) -> Path:
    """The folder itself, or its single subfolder when the student packed one."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
