"""The layering docs/architecture.md's table states, checked on the code itself.

Every module of the package has a layer; a module imports only from its own layer or below
(imports under ``if TYPE_CHECKING:`` are for type hints and do not count). Layer 0 is text in,
data out: importing it loads no SSH stack, no Vagrant, no pytest and no guest transport, so
whoever reads a crash log (a CI job, `harness oops`) needs none of them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "harness"

# docs/architecture.md's table, as data: layer -> modules (without the "harness." prefix).
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("", "errors", "schema", "paths", "untrusted", "oops", "oops.demangle", "oops.logtext",
        "oops.patterns", "oops.title", "oops.detect", "oops.scan", "oops.symbolize", "oops.corpus",
        "grade.roster", "vmoptions", "nightly", "nightly.known", "matrix"),  # text in, data out
    1: ("hostexec", "kernelbuild", "boxes", "boxbuild", "accel", "libvirt", "guestnet",
        "coverage", "nightly.history", "nightly.dashboard"),  # host
    2: ("transport", "console", "surroundings", "taint", "sync", "hostbuild", "build", "kmsg",
        "kmem", "leaks", "guest", "kmod", "buildlane"),  # a guest, through a transport
    3: ("vagrant_machine", "vm", "cleanstate", "doctor", "session",
        "testrun"),  # a VM's lifecycle, a test's life
    4: ("plugin", "cli", "grade", "grade.spec", "grade.extract", "grade.report",
        "grade.runner", "grade.plugin", "nightly.plugin",
        "matrixplugin"),  # front ends: pytest, the command line, grading, the nightly, matrices
}
LAYER_OF = {("harness." + name).rstrip("."): layer
            for layer, names in LAYERS.items() for name in names}
HEAVY = ["paramiko", "vagrant", "pytest", "harness.transport", "harness.vm"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The harness modules ``path`` imports at run time (anywhere in it, but not for type
    hints only)."""
    tree = ast.parse(path.read_text())
    hinted = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
              and "TYPE_CHECKING" in ast.unparse(block.test) for stmt in block.body
              for node in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hinted:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "harness" or name.startswith("harness.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_module_name(p) for p in MODULES if _module_name(p) not in LAYER_OF]
    assert missing == [], f"put these in LAYERS (and docs/architecture.md's table): {missing}"


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_a_module_imports_only_from_its_layer_or_below(path):
    name = _module_name(path)
    own = LAYER_OF[name]
    upward = {dep: LAYER_OF.get(dep, LAYER_OF.get(dep.rpartition(".")[0]))
              for dep in _imports(path)}
    upward = {dep: layer for dep, layer in upward.items() if layer is None or layer > own}
    assert upward == {}, f"{name} (layer {own}) imports from above: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    # A guard that guards: a layer-0 file importing the VM is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from harness.transport import Transport\n"
                   "def f():\n    from harness.vm import VM\n")
    assert _imports(bad) == {"harness.vm"}


@pytest.mark.parametrize("module", [name for name, layer in LAYER_OF.items()
                                    if layer == 0 and name != "harness"])
def test_layer_zero_loads_no_transport_vm_or_pytest(module):
    probe = (f"import sys, {module}; "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"


def test_the_documented_table_says_the_same_layers():
    """docs/architecture.md's table and LAYERS agree on every module the table names."""
    documented: dict[str, int] = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and cells[1][:1].isdigit():
            layer = int(cells[1].split()[0])
            for path in re.findall(r"`harness/([\w/]+)\.py`", cells[2]):
                documented["harness." + path.replace("/", ".")] = layer
            for folder in re.findall(r"`harness/([\w]+)/`", cells[2]):
                documented["harness." + folder] = layer
    assert documented, "no table found in docs/architecture.md"
    assert {name: LAYER_OF.get(name) for name in documented} == documented
