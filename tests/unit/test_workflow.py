"""The nightly workflow is valid and does what the README promises."""

from pathlib import Path

import yaml

from harness.boxes import load_catalogue
from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_triggers_are_nightly_and_manual():
    triggers = _workflow()["on"]
    assert "workflow_dispatch" in triggers
    assert triggers["schedule"][0]["cron"].count(" ") == 4


def test_matrix_boxes_are_in_the_catalogue():
    job = _workflow()["jobs"]["vm-tests"]
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    boxes = [entry["box"] for entry in job["strategy"]["matrix"]["include"]]
    assert "debian-12" in boxes and "fedora/31-cloud-base" in boxes
    for box in boxes:
        catalogue.get(box)


def test_steps_enable_kvm_cache_the_box_and_upload_results():
    steps = _workflow()["jobs"]["vm-tests"]["steps"]
    text = "\n".join(str(step) for step in steps)
    assert "99-kvm4all.rules" in text and "udevadm trigger" in text
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert "steps.digest.outputs.digest" in cache["with"]["key"]
    assert "harness box digest" in text
    assert "pytest -m vm" in text and "--junitxml" in text
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    paths = {s["with"]["path"] for s in uploads}
    assert "junit-*.xml" in paths and ".harness/serial/" in paths
    assert any(s.get("if") == "failure()" for s in uploads)
    for step in steps:
        assert "uses" in step or "run" in step, step


def test_box_digest_is_the_recipe_hash(capsys):
    assert main(["box", "digest", "debian-12"]) == 0
    digest = capsys.readouterr().out.strip()
    assert len(digest) == 16 and all(c in "0123456789abcdef" for c in digest)


def test_the_debian_suite_is_sharded_with_pytest_split():
    job = _workflow()["jobs"]["vm-tests"]
    debian = [e for e in job["strategy"]["matrix"]["include"] if e["box"] == "debian-12"]
    shards = {e["shards"] for e in debian}
    assert len(shards) == 1
    assert sorted(e["shard"] for e in debian) == list(range(1, shards.pop() + 1))
    vm_step = next(s for s in job["steps"] if s.get("name") == "VM tests")
    assert "--splits ${{ matrix.shards }} --group ${{ matrix.shard }}" in vm_step["run"]
    unit_step = next(s for s in job["steps"] if s.get("name") == "Unit tests")
    assert unit_step["if"] == "matrix.shard == 1"  # once, not once per shard


def test_a_remote_libvirt_host_is_optional_configuration():
    job = _workflow()["jobs"]["vm-tests"]
    assert job["env"]["HARNESS_LIBVIRT_HOST"] == "${{ vars.HARNESS_LIBVIRT_HOST }}"
    key_step = next(s for s in job["steps"] if "remote libvirt host" in s.get("name", ""))
    assert key_step["if"] == "env.HARNESS_LIBVIRT_HOST != ''"
    assert "secrets.HARNESS_LIBVIRT_SSH_KEY" in str(key_step["env"])
