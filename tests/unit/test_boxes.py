from pathlib import Path

import pytest
import yaml

from harness.boxes import CatalogueError, load_catalogue, parse_catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_catalogue_is_valid():
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    assert catalogue.default == "debian-12"
    assert catalogue.get(None).is_local
    fedora = catalogue.get("fedora/31-cloud-base")
    assert fedora.source == "cloud" and fedora.package_manager == "dnf"
    release = "5.3.7-301.fc31.x86_64"
    assert fedora.headers_package_for(release) == f"kernel-devel-{release}"


def _entry(**overrides):
    entry = {"source": "cloud", "vagrant_box": "x/y", "user": "vagrant",
             "package_manager": "apt", "headers_package": "h", "headers_install": "i"}
    entry.update(overrides)
    return {"default": "b", "boxes": {"b": entry}}


def test_an_unknown_key_is_named_with_file_and_entry():
    with pytest.raises(CatalogueError, match=r"boxes.yaml: box 'b': unknown key 'colour'"):
        parse_catalogue(_entry(colour="red"), Path("boxes.yaml"))


def test_a_wrong_type_is_named():
    with pytest.raises(CatalogueError, match=r"box 'b': key 'user' must be str, got int"):
        parse_catalogue(_entry(user=3), Path("boxes.yaml"))


def test_a_bad_recipe_key_is_named():
    data = _entry(source="local", recipe={"suite": "bookworm", "packages": ["a"], "size": 3})
    with pytest.raises(CatalogueError, match=r"box 'b': recipe: unknown key 'size'"):
        parse_catalogue(data, Path("boxes.yaml"))


def test_a_local_box_needs_a_recipe_and_choices_are_checked():
    with pytest.raises(CatalogueError, match="needs a 'recipe'"):
        parse_catalogue(_entry(source="local"), Path("b.yaml"))
    with pytest.raises(CatalogueError, match="'package_manager' must be one of apt, dnf"):
        parse_catalogue(_entry(package_manager="pacman"), Path("b.yaml"))


def test_unknown_box_lists_the_known_ones(tmp_path):
    path = tmp_path / "boxes.yaml"
    path.write_text(yaml.safe_dump(_entry()))
    with pytest.raises(CatalogueError, match="known boxes: b"):
        load_catalogue(path).get("nope")


def test_recipe_digest_changes_with_the_recipe():
    catalogue = load_catalogue(ROOT / "boxes.yaml")
    a = catalogue.get("debian-12").recipe
    b = catalogue.get("debian-12-k6.12").recipe
    assert a.digest("1") != b.digest("1")
    assert a.digest("1") == a.digest("1") != a.digest("2")
