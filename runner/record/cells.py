"""`cells.jsonl`, the record of a compare step: one object per cell (and per image).

Ordered by row, then prompt, then seed, then image. Each object holds `row` (its label),
`adapters` (name -> weight, null for `base`), `prompt`, `seed`, and either `text` and
`token_ids` or `image`, the PNG's file name beside it. Written by the recorder, read by
the API and the report page; reading needs no model library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import RunDirError


@dataclass(frozen=True)
class Cell:
    """One line of cells.jsonl, as read back."""

    row: str
    adapters: dict[str, float] | None
    prompt: str
    seed: int
    text: str | None = None
    token_ids: list[int] | None = None
    image: str | None = None  # the PNG's file name in the step's folder

    def to_json(self) -> dict[str, Any]:
        head = {"row": self.row, "adapters": self.adapters, "prompt": self.prompt}
        if self.image is not None:
            return {**head, "seed": self.seed, "image": self.image}
        return {**head, "seed": self.seed, "text": self.text, "token_ids": self.token_ids}


def line(cell: Cell) -> bytes:
    text = json.dumps(cell.to_json(), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def read(file: Path) -> list[Cell]:
    """Every cell of a cells.jsonl file, in order; raises RunDirError naming a bad line."""
    cells = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{file}: not readable ({exc})") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
            adapters = row["adapters"]
            cells.append(
                Cell(
                    row=str(row["row"]),
                    adapters=None
                    if adapters is None
                    else {str(k): float(v) for k, v in adapters.items()},
                    prompt=str(row["prompt"]),
                    seed=int(row["seed"]),
                    text=row.get("text"),
                    token_ids=[int(t) for t in row["token_ids"]] if "token_ids" in row else None,
                    image=row.get("image"),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunDirError(f"{file}:{number}: not a cell ({exc})") from None
    return cells
