"""The nightly workflow: valid for GitHub, safe with untrusted values, and running what the
catalogue and the suite have."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.boxes import load_catalogue

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
CHECK_JSONSCHEMA = shutil.which("check-jsonschema") or str(
    Path(sys.executable).with_name("check-jsonschema"))


def _workflow(text: str | None = None) -> dict:
    data = yaml.safe_load(text if text is not None else WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    if not Path(CHECK_JSONSCHEMA).exists():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    return subprocess.run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True)


def test_the_workflow_follows_githubs_workflow_schema():
    done = _validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))
    assert _validate(broken).returncode != 0


def _run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"]
            if "run" in step]


def test_no_expression_is_pasted_into_a_shell_script():
    """zizmor's template-injection rule: a ${{ }} in run: becomes shell code; values go
    through env: instead."""
    scripts = _run_scripts(_workflow())
    assert scripts
    assert [s for s in scripts if "${{" in s] == []


def test_every_action_is_pinned_to_a_commit():
    uses = [step["uses"] for job in _workflow()["jobs"].values() for step in job["steps"]
            if "uses" in step]
    assert uses
    unpinned = [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u)]
    assert unpinned == []


def test_every_matrix_box_is_in_the_catalogue_and_every_test_path_exists():
    job = _workflow()["jobs"]["vm-tests"]
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    for entry in job["strategy"]["matrix"]["include"]:
        catalogue.get(entry["box"])
        assert (ROOT / entry["tests"]).exists(), entry["tests"]


def test_each_sharded_box_runs_every_shard_once():
    job = _workflow()["jobs"]["vm-tests"]
    by_box: dict[str, list[dict]] = {}
    for entry in job["strategy"]["matrix"]["include"]:
        by_box.setdefault(entry["box"], []).append(entry)
    for box, entries in by_box.items():
        shards = {e["shards"] for e in entries}
        assert len(shards) == 1, box
        assert sorted(e["shard"] for e in entries) == list(range(1, shards.pop() + 1)), box


def test_a_box_digest_changes_with_its_recipe_and_only_then(tmp_path):
    """The digest is the box cache's key: the same recipe must hit, any change must miss."""
    import dataclasses

    from harness.boxbuild import BUILDER_VERSION

    box = load_catalogue(ROOT / "boxes.yaml").get("debian-12-debug")
    recipe = box.recipe
    assert recipe is not None and recipe.kernel is not None
    same = load_catalogue(ROOT / "boxes.yaml").get("debian-12-debug").recipe
    assert same.digest(BUILDER_VERSION) == recipe.digest(BUILDER_VERSION)
    more = dataclasses.replace(recipe, packages=(*recipe.packages, "strace"))
    assert more.digest(BUILDER_VERSION) != recipe.digest(BUILDER_VERSION)
    assert recipe.digest("next-builder") != recipe.digest(BUILDER_VERSION)
    fragment = tmp_path / "debug.config"
    fragment.write_text(recipe.kernel.config.read_text() + "CONFIG_KCSAN=y\n")
    other_kernel = dataclasses.replace(recipe, kernel=dataclasses.replace(recipe.kernel,
                                                                          config=fragment))
    assert other_kernel.digest(BUILDER_VERSION) != recipe.digest(BUILDER_VERSION)


def test_a_row_running_the_whole_suite_builds_every_box_its_tests_ask_for():
    """Tests ask for boxes by name (vm_box markers); a row that runs them all must have each
    of those boxes built, not only its own."""
    asked = set()
    for path in (ROOT / "tests" / "vm").glob("test_*.py"):
        asked |= set(re.findall(r"vm_box\(\"([\w./-]+)\"\)", path.read_text()))
        asked |= set(re.findall(r"^(?:STOCK|DEBUG) = \"([\w./-]+)\"", path.read_text(), re.M))
    assert {"debian-12-debug", "debian-12-k6.12"} <= asked
    for entry in _workflow()["jobs"]["vm-tests"]["strategy"]["matrix"]["include"]:
        if entry["tests"] == "tests":
            built = {entry["box"], *entry.get("other_boxes", "").split()}
            assert asked <= built, entry



def test_the_token_can_only_read_and_no_checkout_keeps_credentials():
    workflow = _workflow()
    assert workflow["permissions"] == {"contents": "read"}
    checkouts = [step for job in workflow["jobs"].values() for step in job["steps"]
                 if step.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(step.get("with", {}).get("persist-credentials") is False
                             for step in checkouts)


def test_the_kernel_matrix_job_runs_a_named_matrix_and_keeps_its_grids():
    job = _workflow()["jobs"]["kernel-matrix"]
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    assert len(catalogue.matrix(job["env"]["MATRIX"])) >= 5
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert '--vm-matrix "$MATRIX"' in runs and "--vm-build-only" in runs
    for path in re.findall(r"(tests/[\w/]+\.py)", runs):
        assert (ROOT / path).exists(), path
    uploads = [step["with"]["path"] for step in job["steps"]
               if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert any("vm-matrix/" in path for path in uploads)
    assert "kernel-matrix" in _workflow()["jobs"]["history"]["needs"]


def test_the_known_failures_file_loads_and_names_boxes_of_the_catalogue():
    from fnmatch import fnmatch

    from harness.nightly.known import load_known_failures

    known = load_known_failures(ROOT / ".github" / "known-failures.yaml")
    boxes = load_catalogue(ROOT / "boxes.yaml").boxes
    for entry in known.entries:
        assert entry.box is None or any(fnmatch(name, entry.box) for name in boxes), entry
