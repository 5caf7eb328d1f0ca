"""The box catalogue: loading and validating ``boxes.yaml``.

A box entry says where a Vagrant box comes from (Vagrant Cloud, or a local recipe that
``harness box build`` turns into a box), which user to log in as, and how the running kernel's
headers are made present. Everything else in the harness asks this module, never the YAML.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import CatalogueError
from harness.kernelbuild import KernelRecipe
from harness.schema import Schema, check_keys

PACKAGED_CATALOGUE = Path(__file__).parent / "data" / "boxes.yaml"


@dataclass(frozen=True)
class Recipe:
    """What goes into a locally built box."""

    suite: str
    packages: tuple[str, ...]
    hostname: str = "harness"
    disk_size_gb: int = 8
    kernel: KernelRecipe | None = None  # a kernel compiled for this box instead of Debian's
    apt_options: tuple[str, ...] = ()  # given to apt during the build (mmdebstrap --aptopt)

    def digest(self, builder_version: str) -> str:
        """A short hash that changes whenever the image would come out different."""
        fields: dict[str, Any] = {
            "suite": self.suite,
            "packages": sorted(self.packages),
            "hostname": self.hostname,
            "disk_size_gb": self.disk_size_gb,
            "builder": builder_version,
        }
        if self.kernel is not None:
            fields["kernel"] = [self.kernel.digest(), self.kernel.cmdline]
        if self.apt_options:
            fields["apt_options"] = list(self.apt_options)
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DirectBoot:
    """The kernel, initrd and command line libvirt boots a box's guest with (host paths)."""

    kernel: Path
    initrd: Path | None  # None: the kernel mounts its root disk itself
    cmdline: str


@dataclass(frozen=True)
class Box:
    name: str
    source: str
    vagrant_box: str
    user: str
    package_manager: str
    headers_package: str
    headers_install: str
    description: str = ""
    recipe: Recipe | None = None
    kernel_series: str = ""  # "6.1", or "latest" for a rolling suite's newest kernel

    @property
    def is_local(self) -> bool:
        return self.source == "local"

    @property
    def series_version(self) -> tuple[int, ...]:
        """The kernel series as a comparable tuple; "latest" (and an unknown series) sorts
        after every numbered one."""
        return version_tuple(self.kernel_series) or (10**6,)

    def headers_package_for(self, release: str) -> str:
        return self.headers_package.format(release=release)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"6.12.57+deb13-amd64"`` -> ``(6, 12, 57)``: the leading dotted numbers of a kernel
    release or series, comparable with ``(6, 4)``; ``()`` when it starts with none."""
    numbers = []
    for part in text.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(numbers)


@dataclass
class Catalogue:
    path: Path
    default: str
    boxes: dict[str, Box] = field(default_factory=dict)
    matrices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def matrix(self, spec: str) -> list[Box]:
        """The boxes of a matrix: box names and named sets from ``matrices``, joined by commas
        (``debian-11,debian-12``, ``lts,debian-sid``), each box once, in the order given."""
        names: list[str] = []
        for part in (n.strip() for n in spec.split(",") if n.strip()):
            names += self.matrices.get(part, (part,))  # a named matrix inside a list too
        if not names:
            raise CatalogueError(f"{self.path}: an empty box list {spec!r}; name boxes "
                                 f"(known: {', '.join(sorted(self.boxes))}) or a matrix "
                                 f"({', '.join(sorted(self.matrices)) or 'none defined'})")
        boxes: list[Box] = []
        for name in names:
            box = self.get(name)
            if box not in boxes:
                boxes.append(box)
        return boxes

    def get(self, name: str | None) -> Box:
        name = name or self.default
        if name in self.boxes:
            return self.boxes[name]
        for box in self.boxes.values():
            if box.vagrant_box == name:
                return box
        known = ", ".join(sorted(self.boxes))
        raise CatalogueError(f"{self.path}: no box named {name!r}; known boxes: {known}")


# key -> (type, required).  The schema is data so an unknown key or a wrong type can be named.
_BOX_KEYS: Schema = {
    "source": (str, True),
    "vagrant_box": (str, True),
    "user": (str, True),
    "package_manager": (str, True),
    "headers_package": (str, True),
    "headers_install": (str, True),
    "description": (str, False),
    "recipe": (dict, False),
    "kernel_series": (str, False),
}
_RECIPE_KEYS: Schema = {
    "suite": (str, True),
    "packages": (list, True),
    "hostname": (str, False),
    "disk_size_gb": (int, False),
    "kernel": (dict, False),
    "apt_options": (list, False),
}
_KERNEL_KEYS: Schema = {
    "source_package": (str, True),
    "config": (str, True),
    "version": (str, False),
    "cmdline": (str, False),
}
_CHOICES = {"source": ("local", "cloud"), "package_manager": ("apt", "dnf")}


def _check_keys(where: str, data: Any, schema: Schema) -> None:
    check_keys(where, data, schema, CatalogueError, _CHOICES)


def parse_catalogue(data: Any, path: Path) -> Catalogue:
    _check_keys(str(path), data, {"default": (str, True), "boxes": (dict, True),
                                  "matrices": (dict, False)})
    boxes: dict[str, Box] = {}
    for name, entry in data["boxes"].items():
        where = f"{path}: box {name!r}"
        _check_keys(where, entry, _BOX_KEYS)
        recipe = None
        if "recipe" in entry:
            _check_keys(f"{where}: recipe", entry["recipe"], _RECIPE_KEYS)
            raw = dict(entry["recipe"])
            if not all(isinstance(p, str) for p in raw["packages"]):
                raise CatalogueError(f"{where}: recipe: key 'packages' must be a list of strings")
            raw["packages"] = tuple(raw["packages"])
            if not all(isinstance(o, str) for o in raw.get("apt_options", [])):
                raise CatalogueError(f"{where}: recipe: key 'apt_options' must be a list of "
                                     "strings")
            raw["apt_options"] = tuple(raw.get("apt_options", ()))
            if "kernel" in raw:
                raw["kernel"] = parse_kernel(f"{where}: recipe: kernel", raw["kernel"], path)
            recipe = Recipe(**raw)
        if entry["source"] == "local" and recipe is None:
            raise CatalogueError(f"{where}: a local box needs a 'recipe'")
        fields = {k: v for k, v in entry.items() if k != "recipe"}
        boxes[name] = Box(name=name, recipe=recipe, **fields)
    if data["default"] not in boxes:
        raise CatalogueError(f"{path}: default box {data['default']!r} is not in 'boxes'")
    matrices: dict[str, tuple[str, ...]] = {}
    for name, members in (data.get("matrices") or {}).items():
        where = f"{path}: matrix {name!r}"
        if not isinstance(members, list) or not members \
                or not all(isinstance(m, str) for m in members):
            raise CatalogueError(f"{where}: must be a non-empty list of box names")
        unknown = [m for m in members if m not in boxes]
        if unknown:
            raise CatalogueError(f"{where}: no box named {', '.join(map(repr, unknown))}; "
                                 f"known boxes: {', '.join(sorted(boxes))}")
        matrices[str(name)] = tuple(members)
    return Catalogue(path=path, default=data["default"], boxes=boxes, matrices=matrices)


def parse_kernel(where: str, data: Any, catalogue: Path) -> KernelRecipe:
    """A recipe's `kernel:`; its `config` is a path relative to the catalogue's folder, or to
    the folder of the catalogue shipped with harness (whose fragments are in data/kernels)."""
    _check_keys(where, data, _KERNEL_KEYS)
    candidates = [catalogue.parent / data["config"], PACKAGED_CATALOGUE.parent / data["config"]]
    config = next((c for c in candidates if c.is_file()), None)
    if config is None:
        raise CatalogueError(
            f"{where}: config {data['config']!r} is neither a file next to the catalogue nor a "
            f"fragment shipped with harness (in {PACKAGED_CATALOGUE.parent})"
        )
    return KernelRecipe(source_package=data["source_package"], config=config.resolve(),
                        version=data.get("version"), cmdline=data.get("cmdline", ""))


def find_catalogue(project_dir: Path | None = None) -> Path:
    """The project's own boxes.yaml when it has one, else the catalogue shipped with harness."""
    if project_dir is not None and (project_dir / "boxes.yaml").is_file():
        return project_dir / "boxes.yaml"
    return PACKAGED_CATALOGUE


def load_catalogue(path: Path | None = None, project_dir: Path | None = None) -> Catalogue:
    path = path or find_catalogue(project_dir)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise CatalogueError(f"{path}: cannot read the box catalogue: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise CatalogueError(f"{path}: not valid YAML: {err}") from err
    return parse_catalogue(data, path)
