#!/usr/bin/env python3
"""The planted-bug table (bug x box: caught or not, title, module line) as Markdown, from the
rows tests/vm/test_planted_bugs.py writes to .harness/planted-bugs.jsonl (the last row of each
bug and box wins).

Usage: python bench/planted_table.py [ROWS_FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOXES = ("debian-12", "debian-12-debug")


def cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    wanted = [t for t in row["titles"] if not t.startswith("WARNING in do_one_initcall")]
    if not row["location"]:
        return "nothing reported" if not wanted else "; ".join(f"`{t}`" for t in wanted)
    where = Path(row["location"]).name
    titles = " and ".join(f"`{t}`" for t in wanted)
    return f"{titles} at {where} `{row['source']}`" + (
        "<br>" + "<br>".join(row["history"]) if row["history"] else "")


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".harness" / "planted-bugs.jsonl"
    rows: dict[tuple[str, str], dict] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row["bug"], row["box"]] = row
    bugs = list(dict.fromkeys(bug for bug, _ in rows))
    print("| planted bug | " + " | ".join(BOXES) + " |")
    print("| --- | " + " | ".join("---" for _ in BOXES) + " |")
    for bug in bugs:
        print(f"| {bug} | " + " | ".join(cell(rows.get((bug, box))) for box in BOXES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
