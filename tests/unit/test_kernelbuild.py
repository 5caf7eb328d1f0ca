"""The debug box's kernel build, without compiling: the fragment's check against the final
.config, the cache key, and the errors that say what to install or free."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from harness import kernelbuild
from harness.boxes import load_catalogue
from harness.kernelbuild import KernelBuild, KernelBuildError, KernelRecipe, dropped_settings

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "harness" / "data" / "kernels" / "debug.config"


def test_the_catalogue_builds_the_debug_box_from_the_shipped_fragment():
    box = load_catalogue(ROOT / "boxes.yaml").get("debian-12-debug")
    assert box.recipe is not None and box.recipe.kernel is not None
    assert box.recipe.kernel.config == FRAGMENT.resolve()
    assert "kasan_multi_shot" in box.recipe.kernel.cmdline
    assert not any(p.startswith("linux-image") for p in box.recipe.packages)


def test_lines_kconfig_dropped_are_named_and_kept_ones_are_not():
    fragment = "CONFIG_KASAN=y\n# CONFIG_WERROR is not set\nCONFIG_LOCALVERSION=\"-x\"\n" \
               "CONFIG_KMSAN=y\n"
    final = "CONFIG_KASAN=y\nCONFIG_LOCALVERSION=\"-x\"\nCONFIG_WERROR=y\n"
    assert dropped_settings(fragment, final) == ["CONFIG_WERROR=n (got: y)",
                                                 "CONFIG_KMSAN=y (got: n)"]
    assert dropped_settings(fragment, "CONFIG_KASAN=y\nCONFIG_LOCALVERSION=\"-x\"\n"
                                      "CONFIG_KMSAN=y\n") == []


def test_the_cache_key_follows_the_fragment_and_the_pinned_version(tmp_path):
    fragment = tmp_path / "f.config"
    fragment.write_text(FRAGMENT.read_text())
    recipe = KernelRecipe("linux-source-6.1", fragment)
    same = KernelRecipe("linux-source-6.1", fragment, cmdline="only the boot changes")
    before = recipe.digest()
    assert same.digest() == before  # the command line is the box's, not the kernel's
    assert KernelRecipe("linux-source-6.1", fragment, version="6.1.192-2").digest() != before
    fragment.write_text(FRAGMENT.read_text() + "CONFIG_KCSAN=y\n")
    assert recipe.digest() != before


def test_a_cached_build_is_taken_without_any_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    build = KernelBuild(KernelRecipe("linux-source-6.1", FRAGMENT))
    build.dir.mkdir(parents=True)
    for name in ("linux-image-6.1.192-harness-debug_1_amd64.deb", "vmlinux", "System.map"):
        (build.dir / name).write_text("x")
    (build.dir / "built.json").write_text(
        '{"release": "6.1.192-harness-debug", "packages": '
        '["linux-image-6.1.192-harness-debug_1_amd64.deb"]}')
    monkeypatch.setattr(shutil, "which", lambda tool: pytest.fail(f"looked for {tool}"))
    built = build.build()
    assert built.release == "6.1.192-harness-debug"
    assert built.system_map == build.dir / "System.map"


def test_missing_tools_and_headers_are_named_with_their_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool in ("bison", "fakeroot")
                        else "/usr/bin/" + tool)
    monkeypatch.setattr(kernelbuild, "BUILD_HEADERS", {str(tmp_path / "libelf.h"): "libelf-dev"})
    with pytest.raises(KernelBuildError) as error:
        KernelBuild(KernelRecipe("linux-source-6.1", FRAGMENT)).build()
    message = str(error.value)
    assert "bison (package bison)" in message and "fakeroot (package fakeroot)" in message
    assert "libelf.h (package libelf-dev)" in message and "apt-get install" in message


def test_too_little_disk_is_an_error_that_says_how_much(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kernelbuild, "BUILD_HEADERS", {})
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/" + tool)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(0, 0, 3 * 1024**3))
    with pytest.raises(KernelBuildError, match=r"about 12 GB free .* 3\.0 GB are"):
        KernelBuild(KernelRecipe("linux-source-6.1", FRAGMENT)).build()
