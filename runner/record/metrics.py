"""The metrics a scoring step (score, or a compare's) records per row, and which way each is
better."""

from __future__ import annotations

METRICS = ("loglik", "perplexity", "acc", "acc_norm", "accuracy", "clip_score")
# Higher is better, except perplexity.
HIGHER = {k: k != "perplexity" for k in METRICS}


def best(values: list[float | None], metric: str) -> set[int]:
    """The indexes of the best of VALUES for METRIC (ties all best; None never)."""
    known = [v for v in values if v is not None]
    if not known:
        return set()
    top = max(known) if HIGHER[metric] else min(known)
    return {i for i, v in enumerate(values) if v == top}
