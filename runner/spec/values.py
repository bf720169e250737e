"""What kind of value a parsed YAML or JSON value is, where Python's own test says otherwise:
`True` is an `int` to isinstance, never to a spec or a record."""

from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    """An integer, and not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An integer or a float, and not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
