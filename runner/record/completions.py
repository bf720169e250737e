"""`completions.jsonl`, the record of a text generate step: one object per prompt, in order.

Each object holds `prompt`, `text` (the new text only), `token_ids` (the new tokens only),
`seed` and `adapters` (name -> weight, null with none active). Written by the recorder,
read by the API and the report page; reading needs no model library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.record.trust import adapter_weights, json_lines, records_text, run_records_text
from runner.spec.weights import Weight


@dataclass(frozen=True)
class Completed:
    """One line of completions.jsonl."""

    prompt: str
    text: str
    token_ids: list[int]
    seed: int
    adapters: dict[str, Weight] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "token_ids": self.token_ids,
            "seed": self.seed,
            "adapters": self.adapters,
        }


def line(item: Completed) -> str:
    return json.dumps(item.to_json(), ensure_ascii=False, allow_nan=False) + "\n"


def read(file: Path) -> list[Completed]:
    """Every line of a completions.jsonl file (a regular file within CELLS_LIMIT), in order;
    raises RunDirError naming the file or a bad line."""
    return parse(file, records_text(file))


def read_run(run_dir: Path, rel: str) -> list[Completed]:
    """The completions.jsonl REL of RUN_DIR, read by the run directory's rule."""
    return parse(run_dir / rel, run_records_text(run_dir, rel))


def parse(file: Path, content: str) -> list[Completed]:
    """Every completion of CONTENT, read from FILE; raises RunDirError naming a bad line."""
    return json_lines(file, content, _completed, "a completion")


def _completed(row: dict[str, Any]) -> Completed:
    return Completed(
        prompt=str(row["prompt"]),
        text=str(row["text"]),
        token_ids=[int(t) for t in row["token_ids"]],
        seed=int(row["seed"]),
        adapters=adapter_weights(row["adapters"]),
    )
