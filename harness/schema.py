"""Checking YAML mappings against a small schema table, with errors that name the key.

Used by the box catalogue and the assignment spec. A schema maps each key to
``(type or tuple of types, required)``; ``choices`` lists the allowed values of some keys.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, tuple[type | tuple[type, ...], bool]]


def check_keys(where: str, data: Any, schema: Schema, error: type[Exception],
               choices: dict[str, tuple[str, ...]] | None = None) -> None:
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if key not in schema:
            raise error(f"{where}: unknown key {key!r} (allowed: {', '.join(schema)})")
        wanted = schema[key][0]
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            names = wanted.__name__ if isinstance(wanted, type) else \
                " or ".join(t.__name__ for t in wanted)
            raise error(f"{where}: key {key!r} must be {names}, got {type(value).__name__}")
        if choices and key in choices and value not in choices[key]:
            raise error(f"{where}: key {key!r} must be one of {', '.join(choices[key])}")
    missing = [key for key, (_, required) in schema.items() if required and key not in data]
    if missing:
        raise error(f"{where}: missing key(s) {', '.join(missing)}")
