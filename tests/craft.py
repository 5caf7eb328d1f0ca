"""Hostile inputs made on purpose, shared by the unit and vm tests of the grader."""

from __future__ import annotations

import zipfile
from pathlib import Path

ENCRYPTED = 0x1  # a zip's general purpose flag bit 0


def zip_of(folder: Path, target: Path, flag: int = 0, method: int | None = None) -> Path:
    """A zip of ``folder``'s files, with ``flag`` set in every member's flags (``ENCRYPTED``)
    and ``method`` as every member's compression method (93: zstd), as other zip tools write
    them and Python's zipfile cannot."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    data = bytearray(target.read_bytes())
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + flags_at] |= flag
            if method is not None:
                data[start + method_at:start + method_at + 2] = method.to_bytes(2, "little")
            start += 4
    target.write_bytes(bytes(data))
    return target
