"""Shared by the unit tests that run real tools in the default box's kept root filesystem
(bubblewrap; no VM): the host-build sandbox and gcov."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.boxbuild import box_rootfs
from harness.boxes import load_catalogue
from harness.hostbuild import RootfsBuilder

ROOT = Path(__file__).resolve().parents[2]
RELEASE_GLOB = "lib/modules/*/modules.order"


@pytest.fixture(scope="session")
def box_sandbox(tmp_path_factory: pytest.TempPathFactory) -> RootfsBuilder:
    """The default box's root filesystem as a sandbox; the test is skipped, saying why, on a
    host where the box was not built."""
    rootfs = box_rootfs(load_catalogue(None, project_dir=ROOT).get(None))
    if rootfs is None or not any(rootfs.glob(RELEASE_GLOB)):
        pytest.skip("the default box's root filesystem is not built here "
                    "(`harness box build`; scripts/test.sh does it before the tests)")
    found = RootfsBuilder(rootfs, tmp_path_factory.mktemp("host-build"))
    reason = found.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return found
