"""The rows of a compare step: what each way of writing one means, and how many there are.

A row is one adapter setting: `base` (no adapter, as after `disable`), a name, a list of
names (each at 1.0), or a mapping name -> weight where a weight may be a list of weights,
which expands to one row per value (several lists: every combination, the first adapter's
values varying slowest). Validation, the typed spec and the run all read rows through here.
"""

from __future__ import annotations

import itertools
from typing import Any

from runner.spec import weights as w

BASE = "base"

Weights = tuple[tuple[str, w.Weight], ...]


def names(row: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """The adapter names ROW mentions, each with its sub-path inside the row."""
    if isinstance(row, str):
        return [((), row)]
    if isinstance(row, list):
        return [((i,), v) for i, v in enumerate(row) if isinstance(v, str)]
    if isinstance(row, dict):
        return [((k,), str(k)) for k in row]
    return []


def count(row: Any, cap: int) -> int:
    """How many rows ROW expands to, without expanding it; past CAP, some number above CAP.

    The product of many weight lists is astronomically large; it stops growing at CAP + 1.
    """
    if not isinstance(row, dict):
        return 1
    total = 1
    for weights in row.values():
        total *= w.sweep_count(weights, cap)
        if total > cap:
            return cap + 1
    return total


def expand(row: Any) -> list[Weights | None]:
    """The settings ROW stands for, in order; None is `base`. ROW passed validation."""
    if row == BASE:
        return [None]
    if isinstance(row, str):
        return [((row, 1.0),)]
    if isinstance(row, list):
        return [tuple((name, 1.0) for name in row)]
    choices = [w.sweep(value) for value in row.values()]
    return [tuple(zip(row, combo, strict=True)) for combo in itertools.product(*choices)]


def label(weights: Weights | None, *, mapping: bool) -> str:
    """`base`, `3d, cereal` (names written without weights), `3d=0.7, cereal=0.5`, or with
    weights per component `3d unet=0.8 te=0.3, cereal=0.5`."""
    if weights is None:
        return BASE
    if not mapping:
        return ", ".join(name for name, _ in weights)
    return ", ".join(w.shown(name, weight, bare_one=False) for name, weight in weights)
