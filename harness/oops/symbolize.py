"""Module frames to source lines: ``func+0xOFF/0xLEN [mod]`` -> ``file.c:LINE`` and the line.

Works on the host, from the .ko (with debug info) that the build copied back, so a crash can be
symbolized even when it killed the guest (binutils read the .ko, which its author wrote, in
:func:`harness.untrusted.run_on_untrusted`'s sandbox): ``objdump -t`` gives the function's
section and value, ``addr2line -i -j SECTION`` the file, line and inlined callers (as
``gdb hello.ko`` + ``list *(hello_exit+0xc)`` would). Kernel frames keep their names.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.oops.detect import Frame, Report, parse_frame
from harness.untrusted import (
    MAX_SOURCE_LINE,
    UNTRUSTED_FILE,
    find_confined,
    one_line,
    read_source_line,
    run_on_untrusted,
)

# KASAN's history of the object: who allocated it, who freed it (and queued work on it).
_HISTORY_HEADER = re.compile(r"^(?P<event>Allocated|Freed|Last potentially related work "
                             r"creation|Second to last potentially related work creation)"
                             r"(?: by task \d+)?:\s*$")


@dataclass(frozen=True)
class SourceLocation:
    function: str
    file: str
    line: int
    source: str | None  # the text of that line, when the file is at hand

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@functools.lru_cache(maxsize=64)
def _function_symbol_lines(ko: Path, mtime: float) -> list[list[str]]:
    """``objdump -t``'s function symbols of ``ko``, split in fields: VALUE FLAGS... SECTION
    SIZE NAME (run once a file version, for both tables below)."""
    out = run_on_untrusted(["objdump", "-t", UNTRUSTED_FILE], ko)
    return [parts for line in out.splitlines()
            if " F " in line and len(parts := line.split()) >= 5]


@functools.lru_cache(maxsize=64)
def _symbols(ko: Path, mtime: float) -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for parts in _function_symbol_lines(ko, mtime):
        table.setdefault(parts[-1], (parts[-3], int(parts[0], 16)))
    return table


@functools.lru_cache(maxsize=64)
def _functions(ko: Path, mtime: float) -> list[tuple[str, int, int, str]]:
    """(section, value, size, name) of every function symbol of ``ko``."""
    return [(parts[-3], int(parts[0], 16), int(parts[-2], 16), parts[-1])
            for parts in _function_symbol_lines(ko, mtime)]


def function_at(ko: Path, section: str, offset: int) -> tuple[str, int] | None:
    """The function of ``ko`` holding byte ``offset`` of ``section``, and the offset in it:
    what turns a bare address back into ``func+0x5a`` once the module is gone."""
    for sect, value, size, name in _functions(ko, ko.stat().st_mtime):
        if sect == section and value <= offset < value + max(size, 1):
            return name, offset - value
    return None


def locate(ko: Path, frame: Frame, return_address: bool, source_roots: list[Path]) \
        -> list[SourceLocation]:
    """Source locations for a frame, innermost (inlined) first; [] when unknown."""
    symbols = _symbols(ko, ko.stat().st_mtime)
    if frame.function not in symbols:
        return []
    section, value = symbols[frame.function]
    address = value + frame.offset - (1 if return_address and frame.offset else 0)
    # The module's author wrote the file names in its debug information: any bytes.
    out = run_on_untrusted(["addr2line", "-f", "-i", "-e", UNTRUSTED_FILE, "-j", section,
                            hex(address)], ko).split("\n")
    locations = []
    for function, where in zip(out[0::2], out[1::2], strict=False):
        file, _, line_text = where.rpartition(":")
        line_text = line_text.split()[0] if line_text else ""
        if not file or file == "??" or not line_text.isdigit():
            continue
        line = int(line_text)
        shown, source = _find_source(file, line, source_roots)
        locations.append(SourceLocation(one_line(function, 200), shown, line, source))
    return locations


def _find_source(file: str, line: int, roots: list[Path]) -> tuple[str, str | None]:
    """The host copy of a guest source path (matched by trailing path parts), and its line.

    ``file`` comes from the module's debug information, which its author wrote: only files
    inside ``roots`` are read, never through a link (:mod:`harness.untrusted`), so a
    ``#line 1 "/proc/self/environ"`` names a file that is shown as a name and never opened."""
    found = find_confined(roots, file)
    if found is None:
        return one_line(PurePosixPath(file).name or file, MAX_SOURCE_LINE), None
    try:
        shown = str(found.relative_to(Path.cwd()))
    except ValueError:
        shown = str(found)
    return shown, read_source_line(found, line)


@dataclass(frozen=True)
class KernelImage:
    """A vmlinux with debug info and its System.map (the debug box keeps both on the host):
    core-kernel frames become file:line, as the kernel's decode_stacktrace.sh does."""

    vmlinux: Path
    system_map: Path

    def locate_frames(self, frames: list[Frame]) -> dict[Frame, str]:
        """``file:line`` (relative to the kernel tree) of each frame it can place; one
        addr2line run for all of them."""
        addresses = {}
        symbols = _system_map(self.system_map, self.system_map.stat().st_mtime)
        for frame in frames:
            base = symbols.get(frame.function)
            if base is not None:
                addresses[frame] = base + frame.offset - (1 if frame.offset else 0)
        if not addresses:
            return {}
        out = subprocess.run(["addr2line", "-e", str(self.vmlinux),
                              *(hex(a) for a in addresses.values())],
                             capture_output=True, text=True, check=False).stdout.splitlines()
        placed = {}
        for frame, where in zip(addresses, out, strict=False):
            file, _, line = where.partition(":")
            line = line.split()[0] if line else ""
            if file and file != "??" and line.isdigit() and line != "0":
                placed[frame] = f"{_tree_relative(file)}:{line}"
        return placed


@functools.lru_cache(maxsize=4)
def _system_map(path: Path, mtime: float) -> dict[str, int]:
    table: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            table.setdefault(parts[2], int(parts[0], 16))
    return table


def _tree_relative(file: str) -> str:
    """A path in the kernel tree as the kernel's own messages print it (mm/slub.c)."""
    marker = "/linux-source-"
    if marker in file:
        return file.split(marker, 1)[1].split("/", 1)[-1]
    return file


def symbolize(report: Report, modules: dict[str, tuple[Path, Path]],
              kernel: KernelImage | None = None) -> Report:
    """Fill ``location``/``source_line``/``symbolized`` for the report's module frames, and
    with ``kernel`` the file:line of its core-kernel frames.

    ``modules``: module name -> (host .ko with debug info, host source folder).
    """
    if kernel is not None:
        core = [f for f in report.frames if not f.module and f.reliable]
        report.kernel_places = {str(f): where for f, where in kernel.locate_frames(core).items()}
    module_frames = [f for f in report.frames if f.module and f.reliable]
    for index, frame in enumerate(module_frames):
        entry = modules.get(frame.module or "")
        if entry is None:
            continue
        ko, source_dir = entry
        is_rip = index == 0 and report.frames and frame is report.frames[0] and \
            any(line.lstrip().startswith(("RIP:", "pc :", "IP:")) for line in report.lines
                if str(frame.function) in line)
        found = locate(ko, frame, return_address=not is_rip, source_roots=[source_dir])
        if not found:
            continue
        # The module's own line (its source is at hand), not an inlined kernel header's:
        # kmalloc() of slab.h, spin_lock() of spinlock.h. Without any source at hand, the
        # outermost place: the module function's own line, not the header inlined into it.
        inner = next((place for place in found if place.source is not None), found[-1])
        text = f"{frame} at {inner}" + (f": {inner.source.strip()}" if inner.source else "")
        report.symbolized.append(text)
        if frame is report.module_frame and report.location is None:
            report.location = str(inner)
            report.source_line = inner.source
    report.history = object_history(report, modules)
    return report


def object_history(report: Report, modules: dict[str, tuple[Path, Path]]) -> list[str]:
    """For each history section of a KASAN report (Allocated by / Freed by task N), its first
    frame in one of ``modules``: ``freed by llist_exit at llist.c:55: kfree(item);``."""
    history, event, done = [], None, False
    for line in report.lines:
        header = _HISTORY_HEADER.match(line.strip())
        if header:
            event, done = header["event"].lower(), False
            continue
        if event is None or done:
            continue
        if not line.strip():
            event = None
            continue
        frame = parse_frame(line, 0)
        if frame is None or frame.module not in modules:
            continue
        ko, source_dir = modules[frame.module]
        found = locate(ko, frame, return_address=True, source_roots=[source_dir])
        text = f"{event} by {frame.function}"
        if found:
            own = [p for p in found if p.source is not None]
            place = own[0] if own else found[-1]
            text += f" at {place}" + (f": {place.source.strip()}" if place.source else "")
        history.append(text)
        done = True
    return history
