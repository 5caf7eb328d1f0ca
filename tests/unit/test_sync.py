import os
from pathlib import Path

from harness.sync import sync_tree
from harness.transport import LocalTransport


def _module(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("obj-m += m.o\n")
    (src / "m.c").write_text("int x;\n")
    (src / "m.ko").write_bytes(b"build product")
    (src / "include").mkdir()
    (src / "include" / "m.h").write_text("#define X 1\n")
    return src


def test_incremental_sync_sends_changes_and_removes_deletions(tmp_path):
    src = _module(tmp_path)
    guest_root = tmp_path / "guest"
    guest_root.mkdir()
    transport = LocalTransport(guest_root)
    first = sync_tree(transport, src, "/work/m")
    assert sorted(first.sent) == ["Makefile", "include/m.h", "m.c"]
    assert (guest_root / "work/m/include/m.h").read_text() == "#define X 1\n"
    assert not (guest_root / "work/m/m.ko").exists()

    second = sync_tree(transport, src, "/work/m")
    assert second.sent == [] and second.removed == [] and second.unchanged == 3

    (src / "m.c").write_text("int y;\n")
    (src / "include" / "m.h").unlink()
    third = sync_tree(transport, src, "/work/m")
    assert third.sent == ["m.c"] and third.removed == ["include/m.h"]
    assert not (guest_root / "work/m/include/m.h").exists()


def test_symlinks_out_of_the_folder_are_never_followed(tmp_path):
    src = _module(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    os.symlink(secret, src / "leak.c")
    os.symlink(src / "m.c", src / "alias.c")
    guest_root = tmp_path / "guest"
    guest_root.mkdir()
    result = sync_tree(LocalTransport(guest_root), src, "/w")
    assert "leak.c" not in result.sent
    assert any("leak.c" in s and "out of the module folder" in s for s in result.skipped)
    assert "alias.c" in result.sent
    assert not (guest_root / "w/leak.c").exists()
