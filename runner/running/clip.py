"""A compare's `clip_score` (CONTRACT section 10): each picture cell scored against its
prompt by the step's CLIP model (runner.backends.clip_score), read back from the PNG the run
recorded, so that the number is the one anyone gets from the file; the mean per row becomes
the step's `scores`. Run after the cells are made, before cells.jsonl is written."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from runner.record import manifest as m
from runner.running.cellwriter import CellWriter
from runner.sources import hub
from runner.spec.types import Compare


def measure(
    step: Compare, writer: CellWriter, base_dir: Path, device: str
) -> tuple[list[m.ScoreRow], dict[str, Any]]:
    """Set every picture cell's clip_score in WRITER; return each row's mean and, for the
    step's execution record, the CLIP model's identity (its files' sha256); none: [], {}."""
    if "clip_score" not in step.metrics or step.clip is None:
        return [], {}
    from PIL import Image

    from runner.backends.clip_score import ClipScorer
    from runner.record.identity import identify

    source = hub.clip_source(step.clip, base_dir)
    scorer = ClipScorer(source, device)
    local = Path(source) if Path(source).exists() else None
    cells = writer.cells
    pictures = [i for i, cell in enumerate(cells) if cell.image is not None]
    folder = writer.recorder.run / writer.folder
    images = []
    for i in pictures:
        with Image.open(folder / (cells[i].image or "")) as image:
            images.append(image.convert("RGB"))
    found = scorer.scores(images, [cells[i].prompt for i in pictures])
    for i, score in zip(pictures, found, strict=True):
        cells[i] = replace(cells[i], clip_score=score)
    summaries = []
    for row in step.rows:
        mine = [cells[i].clip_score for i in pictures if cells[i].row == row.label]
        weights = None if row.weights is None else dict(row.weights)
        mean = sum(x or 0.0 for x in mine) / len(mine) if mine else None
        summaries.append(m.ScoreRow(row.label, weights, len(mine), clip_score=mean))
    identity = identify(step.clip, local, None)
    writer.recorder.inputs_clip(step.clip, identity)
    return summaries, {"clip": asdict(identity)}
