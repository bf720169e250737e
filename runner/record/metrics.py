"""The metrics a score step records per row, and which way each is better."""

from __future__ import annotations

METRICS = ("loglik", "perplexity", "acc", "acc_norm")
# Higher is better, except perplexity.
HIGHER = {"loglik": True, "perplexity": False, "acc": True, "acc_norm": True}


def best(values: list[float | None], metric: str) -> set[int]:
    """The indexes of the best of VALUES for METRIC (ties all best; None never)."""
    known = [v for v in values if v is not None]
    if not known:
        return set()
    top = max(known) if HIGHER[metric] else min(known)
    return {i for i, v in enumerate(values) if v == top}
