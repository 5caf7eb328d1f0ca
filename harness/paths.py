"""Where the harness keeps things: the user's cache (built boxes) and a project's state folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/harness`` (default ``~/.cache/harness``): built boxes and probes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def state_dir(project_dir: Path) -> Path:
    """``PROJECT/.harness``: the VM's Vagrant folder, serial logs, per-test artefacts."""
    return project_dir / ".harness"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half
    of it (a grading run killed mid-write loses nothing already written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
