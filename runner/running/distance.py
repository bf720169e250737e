"""How far a compare cell is from its base cell (CONTRACT section 9): the arithmetic alone.

- Images: `mean_abs` and `max_abs`, the mean and the largest |a - b| over every pixel and
  channel (0-255), and the difference picture: |a - b| per pixel, scaled so that the largest
  difference is white (all black where the images are equal).
- Text: `first_divergence`, the first token index where the two completions differ (a
  shorter completion differs where it ends; null where they are equal); `same_tokens`, the
  fraction of positions whose tokens are equal over the longer completion's length (1.0 for
  two empty ones); `kl`, the mean over the positions of the base completion of
  KL(P_row || P_base) = sum_v P_row(v) (log P_row(v) - log P_base(v)), the row's next-token
  distribution against the base's, both teacher-forced on the prompt and the base
  completion ("the KL divergence of the row's distributions from the base's").
- A cell equals its base cell where images differ by at most 1 level (`max_abs` <= 1) and
  texts have the same tokens and `kl` < 1e-6; a row is a no-op where every cell does.

numpy and PIL are imported inside the functions: running imports no heavy library at the
top, and a text compare never needs PIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.record.manifest import RowSummary

if TYPE_CHECKING:
    from PIL.Image import Image

NOOP_LEVELS = 1  # images: max_abs at most this is equal
NOOP_KL = 1e-6  # text: kl below this (with the same tokens) is equal


def image_distance(a: Image, b: Image) -> tuple[dict[str, Any], Image]:
    """`{mean_abs, max_abs}` between A and B (same size; RGB compared) and the picture."""
    import numpy as np
    from PIL import Image as PILImage

    if a.size != b.size:
        raise ValueError(f"images of different sizes: {a.size} and {b.size}")
    x = np.asarray(a.convert("RGB"), dtype=np.int16)
    y = np.asarray(b.convert("RGB"), dtype=np.int16)
    diff = np.abs(x - y)
    top = int(diff.max()) if diff.size else 0
    scaled = diff if top == 0 else diff.astype(np.float64) * (255.0 / top)
    picture = PILImage.fromarray(np.rint(scaled).astype(np.uint8), mode="RGB")
    return {"mean_abs": round(float(diff.mean()), 6), "max_abs": top}, picture


def token_distance(base: list[int], row: list[int]) -> dict[str, Any]:
    """`{first_divergence, same_tokens}` of ROW's tokens against BASE's."""
    longer = max(len(base), len(row))
    same = sum(1 for a, b in zip(base, row, strict=False) if a == b)
    first = next((i for i, (a, b) in enumerate(zip(base, row, strict=False)) if a != b), None)
    if first is None and len(base) != len(row):
        first = min(len(base), len(row))
    return {"first_divergence": first, "same_tokens": 1.0 if not longer else same / longer}


def mean_kl(row: Any, base: Any) -> float:
    """The mean over positions of KL(row || base); ROW and BASE are log-probabilities,
    arrays of shape (positions, vocabulary)."""
    import numpy as np

    p, q = np.asarray(row, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2 or not p.shape[0]:
        raise ValueError(f"log-probabilities of shapes {p.shape} and {q.shape}")
    # a token the row gives no mass adds nothing, whatever the base gives it
    terms = np.where(np.isneginf(p), 0.0, np.exp(p) * (p - q))
    return max(0.0, float(terms.sum(axis=1).mean()))


def equal(distance: dict[str, Any]) -> bool:
    """Whether a cell at DISTANCE equals its base cell."""
    if "max_abs" in distance:
        return bool(distance["max_abs"] <= NOOP_LEVELS)
    kl = distance.get("kl")
    return distance["first_divergence"] is None and (kl is None or kl < NOOP_KL)


def mean_distance(distances: list[dict[str, Any]]) -> float | None:
    """A row's distance: the mean of its cells' mean_abs (images) or kl (text)."""
    key = "mean_abs" if distances and "mean_abs" in distances[0] else "kl"
    values = [d[key] for d in distances if d.get(key) is not None]
    return round(sum(values) / len(values), 6) if values else None


def summary(row: str, distances: list[dict[str, Any]]) -> RowSummary:
    """The step's `rows` entry of one non-base row."""
    noop = bool(distances) and all(equal(d) for d in distances)
    return RowSummary(row=row, noop=noop, mean_distance=mean_distance(distances))
