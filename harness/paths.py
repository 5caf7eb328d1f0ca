"""Where the harness keeps things: the user's cache (built boxes) and a project's state folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/harness`` (default ``~/.cache/harness``): built boxes and probes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


# The cache's layout, in one place:
#   boxes/NAME/DIGEST/       a box built from its recipe (rootfs/, added.json)  -- boxbuild
#   kernels/DIGEST/          a kernel compiled for a box (.debs, vmlinux)       -- kernelbuild
#   accel-probe.json         whether KVM works on this boot of the host         -- accel
def box_cache_dir(box_name: str, digest: str) -> Path:
    return cache_dir() / "boxes" / box_name.replace("/", "_") / digest


def cached_box_rootfs_dirs() -> list[Path]:
    """The root filesystems of every box built on this machine."""
    return sorted((cache_dir() / "boxes").glob("*/*/rootfs"))


def kernel_cache_dir(digest: str) -> Path:
    return cache_dir() / "kernels" / digest


def accel_probe_file() -> Path:
    return cache_dir() / "accel-probe.json"


def state_dir(project_dir: Path) -> Path:
    """``PROJECT/.harness``: the VM's Vagrant folder, serial logs, per-test artefacts."""
    return project_dir / ".harness"


def history_db(project_dir: Path) -> Path:
    """The nightly's history database (``harness history``) of a project folder."""
    return state_dir(project_dir) / "history.sqlite"


def vm_project_dir(project_dir: Path, worker: str | None = None, box: str | None = None) -> Path:
    """The folder whose ``.harness/`` holds one VM of ``project_dir``: the project itself, an
    xdist worker's (``.harness/workers/gw0``: each worker has its own VM) and, inside either,
    a second box's (``.harness/boxes/NAME``, for ``@pytest.mark.vm_box``)."""
    folder = state_dir(project_dir) / "workers" / worker if worker else project_dir
    return state_dir(folder) / "boxes" / box if box else folder


def other_vm_project_dirs(project_dir: Path) -> list[tuple[str, Path]]:
    """The folders of ``project_dir``'s other VMs that exist: its xdist workers' and its
    second boxes' (for ``harness vm destroy``), as (what, folder)."""
    workers = sorted((state_dir(project_dir) / "workers").glob("gw*"))
    found = [(f"grading/xdist worker {folder.name}", folder) for folder in workers]
    for owner in (project_dir, *workers):  # a worker's other boxes too (a matrix with -n N)
        found += [(f"box {folder.name}", folder)
                  for folder in sorted((state_dir(owner) / "boxes").glob("*"))]
    return [(what, folder) for what, folder in found if state_dir(folder).is_dir()]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half
    of it (a grading run killed mid-write loses nothing already written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
