"""Core-kernel frames to file:line from a vmlinux with debug info and its System.map (the debug
box keeps both), on a small ELF built here with the host's gcc."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.oops.detect import Frame
from harness.oops.symbolize import KernelImage

SOURCE = """\
int helper(int x)
{
\treturn x * 3;
}

int caller(int x)
{
\tint y = helper(x);
\treturn y + 1;
}

int main(void) { return caller(2); }
"""


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                    reason="needs gcc and binutils")
def test_core_frames_are_placed_by_one_addr2line_run(tmp_path):
    (tmp_path / "core").mkdir()
    source = tmp_path / "core" / "sched.c"
    source.write_text(SOURCE)
    image = tmp_path / "vmlinux"
    subprocess.run(["gcc", "-g", "-O0", "-fno-inline", "-no-pie", "-o", str(image), str(source)],
                   check=True)
    symbols = subprocess.run(["nm", str(image)], capture_output=True, text=True,
                             check=True).stdout
    (tmp_path / "System.map").write_text(symbols)
    kernel = KernelImage(image, tmp_path / "System.map")
    # caller+0x13 is a return address inside caller, after its call of helper.
    called = subprocess.run(["objdump", "-d", str(image)], capture_output=True, text=True,
                            check=True).stdout
    block = called.split("<caller>:")[1].split("\n\n")[0]
    call_line = next(line for line in block.splitlines() if "call" in line)
    after_call = int(block.splitlines()[block.splitlines().index(call_line) + 1]
                     .split(":")[0], 16)
    base = int(next(line.split()[0] for line in symbols.splitlines()
                    if line.endswith(" caller")), 16)
    frames = [Frame("caller", after_call - base, 0, None, 1), Frame("no_such_fn", 4, 0, None, 2)]
    placed = kernel.locate_frames(frames)
    assert list(placed) == [frames[0]]
    assert placed[frames[0]].endswith("sched.c:8")  # int y = helper(x);
