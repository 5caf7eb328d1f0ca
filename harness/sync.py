"""Incremental sync of a module's source folder into the guest, over the transport's SFTP.

The guest folder keeps a manifest (relative path -> sha256) of what was sent. A sync sends only
files whose hash changed and removes files that disappeared, so an unchanged module sends
nothing. A snapshot revert wipes the guest folder and its manifest, and the next sync simply
sends everything again. Build products are never sent; symlinks are followed only when they
stay inside the source folder.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from harness.transport import Transport

MANIFEST = ".harness-manifest.json"
IGNORED = ("*.o", "*.ko", "*.mod", "*.mod.c", "*.mod.o", ".*.cmd", "*.cmd", "modules.order",
           "Module.symvers", "*.a", "*.dwo", ".tmp_*", "*~", "*.swp")
IGNORED_DIRS = (".git", ".tmp_versions", "__pycache__", ".harness")
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class SyncResult:
    remote_dir: str
    sent: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)  # with the reason

    @property
    def changed(self) -> bool:
        return bool(self.sent or self.removed)


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def source_files(source_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Relative POSIX path -> real file to send, and what was skipped with why."""
    root = source_dir.resolve()
    files: dict[str, Path] = {}
    skipped: list[str] = []
    for path in sorted(source_dir.rglob("*")):
        rel_parts = path.relative_to(source_dir).parts
        if any(part in IGNORED_DIRS for part in rel_parts) or _ignored(path.name):
            continue
        rel = "/".join(rel_parts)
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                skipped.append(f"{rel}: symlink pointing out of the module folder")
                continue
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            skipped.append(f"{rel}: larger than {MAX_FILE_BYTES // 2**20} MiB")
            continue
        files[rel] = path
    return files, skipped


def tree_digest(source_dir: Path) -> str:
    """A hash of the folder's sendable content: equal digests build equal modules."""
    files, _ = source_files(source_dir)
    digest = hashlib.sha256()
    for rel, path in sorted(files.items()):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def sync_tree(transport: Transport, source_dir: Path, remote_dir: str) -> SyncResult:
    files, skipped = source_files(source_dir)
    result = SyncResult(remote_dir, skipped=skipped)
    transport.makedirs(remote_dir)
    manifest_path = posixpath.join(remote_dir, MANIFEST)
    try:
        old: dict[str, str] = json.loads(transport.get_bytes(manifest_path))
    except (OSError, ValueError):
        old = {}
    new: dict[str, str] = {}
    for rel, path in files.items():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        new[rel] = digest
        if old.get(rel) == digest:
            result.unchanged += 1
            continue
        parent = posixpath.dirname(rel)
        if parent:
            transport.makedirs(posixpath.join(remote_dir, parent))
        transport.put_bytes(data, posixpath.join(remote_dir, rel), mode=path.stat().st_mode & 0o755)
        result.sent.append(rel)
    for rel in sorted(set(old) - set(new)):
        with contextlib.suppress(FileNotFoundError):
            transport.remove(posixpath.join(remote_dir, rel))
        result.removed.append(rel)
    if result.changed or not old:
        transport.put_bytes(json.dumps(new, sort_keys=True).encode(), manifest_path)
    return result
