"""`cells.jsonl`, the record of a compare step: one object per cell (and per image).

Ordered by row, then prompt, then seed, then image. Each object holds `row` (its label),
`adapters` (name -> weight, null for `base`), `prompt`, `seed`, and either `text` and
`token_ids` or `image`, the PNG's file name beside it. In a compare with a `base` row,
every other cell also holds `distance` from its base cell and `noop` (CONTRACT section 9;
runner.running.distance); with `metrics: [clip_score]`, each picture cell its
`clip_score`. Written by the recorder, read by the API and the report page; reading needs
no model library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.record.trust import adapter_weights, json_lines, records_text, run_records_text
from runner.spec.weights import Weight


@dataclass(frozen=True)
class CellRecord:
    """One line of cells.jsonl, as read back."""

    row: str
    adapters: dict[str, Weight] | None
    prompt: str
    seed: int
    text: str | None = None
    token_ids: list[int] | None = None
    image: str | None = None  # the PNG's file name in the step's folder
    distance: dict[str, Any] | None = None  # from the base cell of the same prompt and seed
    noop: bool | None = None  # its row changed nothing (every cell equal to its base cell)
    clip_score: float | None = None  # with `metrics: [clip_score]` (runner.running.clip)

    def to_json(self) -> dict[str, Any]:
        head = {"row": self.row, "adapters": self.adapters, "prompt": self.prompt}
        if self.image is not None:
            body: dict[str, Any] = {**head, "seed": self.seed, "image": self.image}
        else:
            body = {**head, "seed": self.seed, "text": self.text, "token_ids": self.token_ids}
        if self.distance is not None:
            body.update(distance=self.distance, noop=self.noop)
        if self.clip_score is not None:
            body["clip_score"] = self.clip_score
        return body


def line(cell: CellRecord) -> bytes:
    text = json.dumps(cell.to_json(), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def read(file: Path) -> list[CellRecord]:
    """Every cell of a cells.jsonl file (a regular file within CELLS_LIMIT), in order;
    raises RunDirError naming the file or a bad line."""
    return parse(file, records_text(file))


def read_run(run_dir: Path, rel: str) -> list[CellRecord]:
    """Every cell of the cells.jsonl REL of RUN_DIR, read by the run directory's rule
    (RunDirError for a link, a FIFO, a file past CELLS_LIMIT, or a bad line)."""
    return parse(run_dir / rel, run_records_text(run_dir, rel))


def parse(file: Path, content: str) -> list[CellRecord]:
    """Every cell of CONTENT, read from FILE, in order; raises RunDirError naming a bad line."""
    return json_lines(file, content, _cell, "a cell")


def _cell(row: dict[str, Any]) -> CellRecord:
    return CellRecord(
        row=str(row["row"]),
        adapters=adapter_weights(row["adapters"]),
        prompt=str(row["prompt"]),
        seed=int(row["seed"]),
        text=row.get("text"),
        token_ids=[int(t) for t in row["token_ids"]] if "token_ids" in row else None,
        image=row.get("image"),
        distance=_distance(row.get("distance")),
        noop=None if row.get("noop") is None else bool(row["noop"]),
        clip_score=None if row.get("clip_score") is None else float(row["clip_score"]),
    )


def _distance(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"distance is {type(value).__name__}, expected a mapping")
    return dict(value)
