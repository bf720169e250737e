"""The run directory's layout: the name of every file a run writes, in one place.

spec.yaml            the spec as written          resolved.json   the spec with defaults
manifest.json        the typed record             journal.jsonl   finished steps, while running
report.html          the page                     SHA256SUMS      every other file's sha256
outputs/NN-ID/       a step's outputs: completions.jsonl, K.png; a compare's
                     cells.jsonl, its PNGs (diff-K.png: K.png's difference from
                     its base cell) and grid.png; a train step's adapter, loss.jsonl
                     and, while it runs, its last checkpoint.json + checkpoint.safetensors
"""

from __future__ import annotations

SPEC = "spec.yaml"
RESOLVED = "resolved.json"
MANIFEST = "manifest.json"
JOURNAL = "journal.jsonl"
REPORT = "report.html"
SUMS = "SHA256SUMS"
COMPLETIONS = "completions.jsonl"
CELLS = "cells.jsonl"
GRID = "grid.png"
LOSSES = "loss.jsonl"  # a train step's loss per step
CHECKPOINT_STATE = "checkpoint.json"  # a train step's steps done, losses, the tensors' sha256
CHECKPOINT_TENSORS = "checkpoint.safetensors"  # its adapter weights, optimizer and RNG states
SCORES = "scores.jsonl"  # a score step's cells: one line per (row, record)


def output_dir(index: int, step_id: str | None) -> str:
    """outputs/NN-ID for the 1-based step INDEX."""
    return f"outputs/{index:02d}-{step_id or 'generate'}"


def picture(k: int) -> str:
    """The file name of a step's K-th image (0-based) in its output folder."""
    return f"{k}.png"


def difference(image: str) -> str:
    """The difference picture of a compare cell's IMAGE from its base cell: diff-K.png."""
    return f"diff-{image}"
