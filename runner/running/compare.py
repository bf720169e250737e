"""A compare step: its cells planned, carried out, and the model put back as it was.

A cell is one (row, prompt, seed). It must hold what `set_adapters: ROW` (or `disable` for
`base`) then `generate: {prompt: PROMPT, seed: SEED}` would, so `cell_step` builds exactly
that generate step. How the cells are carried out is an executor's business: `one_by_one`
switches adapters a row at a time and generates cell by cell through the backend; a faster
executor (mixed-adapter batches) can replace it as long as it returns the same results, in
plan order, and says in its `execution` record how it ran them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.backends import Backend
from runner.backends.results import Completion, Picture
from runner.spec.types import Compare, Generate, Row


@dataclass(frozen=True)
class Cell:
    """One (row, prompt, seed) of a compare step; `prompt_index` places its prompt."""

    row: Row
    prompt_index: int
    prompt: str
    seed: int


@dataclass
class Executed:
    """Each cell's results in plan order (one per image), and how they were made."""

    results: list[list[Completion] | list[Picture]]
    execution: dict[str, Any] = field(default_factory=dict)


Executor = Callable[[Backend, Compare, list[Cell]], Executed]


def plan(step: Compare) -> list[Cell]:
    """The cells ordered by row, then prompt, then seed: the order of cells.jsonl."""
    return [
        Cell(row, i, prompt, seed)
        for row in step.rows
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


def one_by_one(backend: Backend, step: Compare, cells: list[Cell]) -> Executed:
    """Row by row, one generate call per cell: each cell made exactly as alone."""
    results: list[list[Completion] | list[Picture]] = []
    current: Row | None = None
    for cell in cells:
        if cell.row is not current:
            apply_row(backend, cell.row)
            current = cell.row
        results.append(backend.generate(cell_step(step, cell)))
    return Executed(results, {"executor": "one_by_one", "calls": len(cells)})


EXECUTOR: Executor = one_by_one
