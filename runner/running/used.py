"""What a generating step ran with beyond what it wrote: where its seed came from, and the
backend's settings after the model's own defaults (the report shows both)."""

from __future__ import annotations

from typing import Any

from runner.spec.types import Compare, Generate, Step


def used(backend: Any, step: Step) -> dict[str, Any]:
    """`seed_from` and, where the backend says (`settings`, transformers), the settings."""
    if not isinstance(step, (Generate, Compare)):
        return {}
    out: dict[str, Any] = {"seed_from": step.seed_from}
    settings = getattr(backend, "settings", None)  # diffusers: each PNG carries its own
    if settings is not None:
        out["settings"] = settings(step.args)
    return out
