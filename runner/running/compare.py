"""A compare step: its cells planned, carried out, and the model put back as it was.

A cell is one (row, prompt, seed). It must hold what `set_adapters: ROW` (or `disable` for
`base`) then `generate: {prompt: PROMPT, seed: SEED}` would, so `cell_step` builds exactly
that generate step. How the cells are carried out is an executor's business: `one_by_one`
switches adapters a row at a time and generates cell by cell through the backend; a faster
executor (mixed-adapter batches) can replace it as long as it hands each cell's results to
`done` in plan order, and returns a record of how it ran them for the step's `execution`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.backends import Backend
from runner.backends.results import Completion, Picture
from runner.spec.types import Compare, Generate, Row


@dataclass(frozen=True)
class Cell:
    """One (row, prompt, seed) of a compare step; the indexes place its row and prompt."""

    row: Row
    row_index: int
    prompt_index: int
    prompt: str
    seed: int


# Takes a cell and what it made (one result per image), in plan order.
Done = Callable[[Cell, list[Completion] | list[Picture]], None]
# Carries out the cells, handing each to `done`; returns how, for the step's record.
Executor = Callable[[Backend, Compare, list[Cell], Done], dict[str, Any]]


def plan(step: Compare) -> list[Cell]:
    """The cells ordered by row, then prompt, then seed: the order of cells.jsonl."""
    return [
        Cell(row, r, i, prompt, seed)
        for r, row in enumerate(step.rows)
        for i, prompt in enumerate(step.prompts)
        for seed in step.seeds
    ]


def cell_step(step: Compare, cell: Cell) -> Generate:
    """The generate step that makes CELL alone: its one prompt, its seed, the step's arguments.

    A negative_prompt list holds one entry per prompt: the cell takes its prompt's.
    """
    args = dict(step.args)
    negative = args.get("negative_prompt")
    if isinstance(negative, list | tuple):
        args["negative_prompt"] = negative[cell.prompt_index]
    return Generate(
        prompts=(cell.prompt,), batch=False, seed=cell.seed, args=args, line=step.line, id=step.id
    )


def apply_row(backend: Backend, row: Row) -> None:
    """Make the model run ROW: `disable` for base, else set_adapters and enable."""
    if row.weights is None:
        backend.disable()
        return
    backend.set_adapters(dict(row.weights))
    backend.enable()


def restore(backend: Backend, active: dict[str, float], disabled: bool, loaded: bool) -> None:
    """Back to the state before the step: the same active adapters, weights, on or off."""
    if loaded:
        backend.set_adapters(dict(active))
    if disabled:
        backend.disable()
    else:
        backend.enable()


def one_by_one(backend: Backend, step: Compare, cells: list[Cell], done: Done) -> dict[str, Any]:
    """Row by row, one generate call per cell: each cell made exactly as alone."""
    current: Row | None = None
    for cell in cells:
        if cell.row is not current:
            apply_row(backend, cell.row)
            current = cell.row
        done(cell, backend.generate(cell_step(step, cell)))
    return {"executor": "one_by_one", "calls": len(cells)}


EXECUTOR: Executor = one_by_one
