"""`defaults.generate`, merged into a generating step: the one place that says how.

A key the step writes wins over the default. Validation asks this on data that may be of
any shape (then there are no defaults); the typed spec asks it on data that passed.
"""

from __future__ import annotations

from typing import Any


def generate_defaults(data: Any) -> dict[str, Any]:
    """The spec's `defaults.generate`; {} where it is absent or not a mapping."""
    defaults = data.get("defaults") if isinstance(data, dict) else None
    generate = defaults.get("generate") if isinstance(defaults, dict) else None
    return generate if isinstance(generate, dict) else {}


def with_defaults(defaults: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """STEP's keys over DEFAULTS."""
    return {**defaults, **step}
