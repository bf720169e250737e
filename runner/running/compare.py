"""A compare step: its cells planned, carried out, and the model put back as it was.

A cell is one (row, prompt, seed). It must hold what `set_adapters: ROW` (or `disable` for
`base`) then `generate: {prompt: PROMPT, seed: SEED}` would, so `cell_step` builds exactly
that generate step. How the cells are carried out is an executor's business: `one_by_one`
switches adapters a row at a time and generates cell by cell through the backend. Faster
executors, chosen by what the backend can do, hand each cell's results to `done` in plan
order too, and return a record of how they ran the cells for the step's `execution`:

- `mixed` (a backend that MixesAdapters, text): greedy cells of many rows in one generate
  call, each batch row run by its own adapter; a cell's tokens depend neither on its seed
  nor on its batch, so one call per (row, prompt) serves every seed. Rows that need one
  adapter at two scales go to different batches; rows the backend cannot mix get a batch
  of their own. Sampled or beam-search cells run one by one.
- `mixed` (a backend that MixesPictures, images): the cells of many rows in one pipeline
  call, each image drawn by its own row's adapter in every component (under classifier-free
  guidance, both halves of the denoiser's batch); rows are grouped as for text, and rows the
  backend cannot mix run as `by_rows` does.
- `by_rows` (a backend that DrawsCells, images): one call per row with all its prompts and
  seeds, identical settings next to each other so the adapters switch as little as can be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from runner.backends.base import Backend, CannotMix, DrawsCells, MixesAdapters, MixesPictures
from runner.results import Completion, GeneratedImage
from runner.spec.arguments import ImageArguments
from runner.spec.types import Compare, Generate, Row
from runner.spec.weights import Weight, order_key


@dataclass(frozen=True)
class PlannedCell:
    """One (row, prompt, seed) of a compare step; the indexes place its row and prompt."""

    row: Row
    row_index: int
    prompt_index: int
    prompt: str
    seed: int


# Per row: the adapter that runs it in a mixed call and its scale, or None (a call of its own).
Lanes = list[tuple[str, float] | None]
# Takes a cell and what it made (one result per image), in plan order.
Done = Callable[[PlannedCell, list[Completion] | list[GeneratedImage]], None]
# Carries out the cells, handing each to `done`; returns how, for the step's record.
Executor = Callable[[Backend, Compare, list[PlannedCell], Done], dict[str, Any]]


def plan(step: Compare) -> list[PlannedCell]:
    """The cells ordered by row, then prompt, then seed: the order of cells.jsonl."""
    return [
        PlannedCell(row, r, i, prompt, seed)
        for r, row in enumerate(step.rows)
        for i, prompt in enumerate(step.prompts)
        for seed in step.seeds
    ]


def cell_step(step: Compare, cell: PlannedCell) -> Generate:
    """The generate step that makes CELL alone: its one prompt, its seed, the step's arguments.

    A negative_prompt list holds one entry per prompt: the cell takes its prompt's.
    """
    args = step.args
    if isinstance(args, ImageArguments) and isinstance(args.negative_prompt, tuple):
        args = replace(args, negative_prompt=args.negative_prompt[cell.prompt_index])
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


def restore(backend: Backend, active: dict[str, Weight], disabled: bool, loaded: bool) -> None:
    """Back to the state before the step: the same active adapters, weights, on or off."""
    if loaded:
        backend.set_adapters(dict(active))
    if disabled:
        backend.disable()
    else:
        backend.enable()


def one_by_one(
    backend: Backend, step: Compare, cells: list[PlannedCell], done: Done
) -> dict[str, Any]:
    """Row by row, one generate call per cell: each cell made exactly as alone."""
    current: Row | None = None
    for cell in cells:
        if cell.row is not current:
            apply_row(backend, cell.row)
            current = cell.row
        done(cell, backend.generate(cell_step(step, cell)))
    return {"executor": "one_by_one", "calls": len(cells)}


class InOrder:
    """Results that may come in any order, handed to `done` in plan order."""

    def __init__(self, cells: list[PlannedCell], done: Done) -> None:
        self.cells, self.done = cells, done
        self.ready: dict[int, list[Any]] = {}
        self.next = 0

    def put(self, index: int, results: list[Any]) -> None:
        self.ready[index] = results
        while self.next in self.ready:
            self.done(self.cells[self.next], self.ready.pop(self.next))
            self.next += 1


def _index(step: Compare, row: int, prompt: int, seed: int) -> int:
    return (row * len(step.prompts) + prompt) * len(step.seeds) + seed


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def mixed(backend: Backend, step: Compare, cells: list[PlannedCell], done: Done) -> dict[str, Any]:
    """Greedy text: many rows in one generate call, each batch row run by its own adapter."""
    assert isinstance(backend, MixesAdapters)
    if not backend.deterministic(step.args):
        return {**one_by_one(backend, step, cells, done), "why": "sampled or beam search"}
    out = InOrder(cells, done)
    template = Generate(prompts=step.prompts, batch=True, seed=step.seeds[0], args=step.args)
    size = backend.batch_size(template)

    def draw(chunk: list[tuple[int, int]], lanes: Lanes, scales: dict[str, float]) -> None:
        names = [lanes[r][0] for r, _ in chunk]  # type: ignore[index]
        _hand_out(
            step, out, chunk, backend.generate_mixed(_prompts(template, chunk), names, scales)
        )

    try:
        lanes = [backend.mix(None if r.weights is None else dict(r.weights)) for r in step.rows]
        batches, refused, lanes = _in_mixed_calls(
            step,
            lanes,
            lambda rows: _chunks([(r, p) for r in rows for p in range(len(step.prompts))], size),
            draw,
        )
        for r in (r for r, lane in enumerate(lanes) if lane is None):
            apply_row(backend, step.rows[r])
            chunks = _chunks([(r, p) for p in range(len(step.prompts))], size)
            for chunk in chunks:
                _hand_out(step, out, chunk, backend.generate(_prompts(template, chunk)))
            batches.append({"rows": [step.rows[r].label], "mixed": False, "calls": len(chunks)})
    finally:
        backend.unmix()
    calls = sum(b["calls"] for b in batches)
    record = {"executor": "mixed", "calls": calls, "batch_size": size, "batches": batches}
    return {**record, "why": f"the model refused a mixed batch: {refused}"} if refused else record


def _in_mixed_calls(
    step: Compare,
    lanes: Lanes,
    chunks_of: Callable[[list[int]], list[list[Any]]],
    draw: Callable[[list[Any], Lanes, dict[str, float]], None],
) -> tuple[list[dict[str, Any]], str, Lanes]:
    """Each group of mixable rows (LANES) drawn in mixed calls, CHUNKS_OF a group's rows by
    DRAW. Once the backend refuses a mixed call (CannotMix), that group and every later one
    go to the per-row fallback: their lanes come back None. Returns the batches as recorded,
    the refusal ('' if none) and the lanes."""
    batches: list[dict[str, Any]] = []
    refused = ""
    for rows, scales in _groups(lanes):
        if not refused:
            chunks = chunks_of(rows)
            try:
                for chunk in chunks:
                    draw(chunk, lanes, scales)
            except CannotMix as why:
                refused = str(why)  # a cell handed out already comes again, the same
            else:
                labels = [step.rows[r].label for r in rows]
                batches.append({"rows": labels, "mixed": True, "calls": len(chunks)})
                continue
        lanes = [None if r in rows else lane for r, lane in enumerate(lanes)]
    return batches, refused, lanes


def _groups(lanes: Lanes) -> list[tuple[list[int], dict[str, float]]]:
    """Rows that can share batches, and the scale each of their adapters runs at: a row
    joins the first group where its adapter is absent or already at its scale."""
    groups: list[tuple[list[int], dict[str, float]]] = []
    for r, lane in enumerate(lanes):
        if lane is None:
            continue
        name, scale = lane
        group = next((g for g in groups if g[1].get(name, scale) == scale), None)
        if group is None:
            groups.append(group := ([], {}))
        group[0].append(r)
        group[1][name] = scale
    return groups


def _prompts(template: Generate, jobs: list[tuple[int, int]]) -> Generate:
    return replace(template, prompts=tuple(template.prompts[p] for _, p in jobs))


def _hand_out(step: Compare, out: InOrder, jobs: list[tuple[int, int]], made: list[Any]) -> None:
    """One greedy completion per (row, prompt), the same for every seed: relabelled."""
    for (r, p), completion in zip(jobs, made, strict=True):
        for s, seed in enumerate(step.seeds):
            out.put(_index(step, r, p, s), [replace(completion, seed=seed)])


def by_rows(
    backend: Backend, step: Compare, cells: list[PlannedCell], done: Done
) -> dict[str, Any]:
    """Images: one call per row (bounded by the backend's batch size) with all its cells."""
    assert isinstance(backend, DrawsCells)
    if not cells:
        return {"executor": "by_rows", "calls": 0, "batches": []}
    out, size = InOrder(cells, done), _images_per_call(backend, step, cells)
    batches = _rows_alone(backend, step, list(enumerate(cells)), out, size)
    calls = sum(b["calls"] for b in batches)
    return {"executor": "by_rows", "calls": calls, "batch_size": size, "batches": batches}


def mixed_images(
    backend: Backend, step: Compare, cells: list[PlannedCell], done: Done
) -> dict[str, Any]:
    """Images: the cells of many rows in one pipeline call, each image drawn by its own
    row's adapter; rows the backend cannot mix run a call of their own (as by_rows)."""
    assert isinstance(backend, MixesPictures) and isinstance(backend, DrawsCells)
    if not cells:
        return {"executor": "mixed", "calls": 0, "batches": []}
    out, size = InOrder(cells, done), _images_per_call(backend, step, cells)
    indexed = list(enumerate(cells))

    def draw(chunk: list[tuple[int, PlannedCell]], lanes: Lanes, scales: dict[str, float]) -> None:
        names = [lanes[c.row_index][0] for _, c in chunk]  # type: ignore[index]
        _draw(backend, step, chunk, out, (names, scales))

    try:
        lanes = [backend.mix(None if r.weights is None else dict(r.weights)) for r in step.rows]
        batches, refused, lanes = _in_mixed_calls(
            step,
            lanes,
            lambda rows: _chunks([(i, c) for i, c in indexed if c.row_index in rows], size),
            draw,
        )
        alone = [(i, c) for i, c in indexed if lanes[c.row_index] is None]
        batches += [{**b, "mixed": False} for b in _rows_alone(backend, step, alone, out, size)]
    finally:
        backend.unmix()
    calls = sum(b["calls"] for b in batches)
    record = {"executor": "mixed", "calls": calls, "batch_size": size, "batches": batches}
    return {**record, "why": f"the pipeline refused a mixed call: {refused}"} if refused else record


def _images_per_call(backend: Backend, step: Compare, cells: list[PlannedCell]) -> int:
    """Cells per call: the backend's images per call over each cell's images."""
    assert isinstance(backend, DrawsCells)
    return max(1, backend.batch_size(cell_step(step, cells[0])) // step.args.per_prompt)


def _rows_alone(
    backend: Backend, step: Compare, cells: list[tuple[int, PlannedCell]], out: InOrder, size: int
) -> list[dict[str, Any]]:
    """A call per row (and per SIZE cells) for CELLS (plan index, cell); identical settings
    next to each other, so the adapters switch once per setting. The batches, as recorded."""
    of_row: dict[int, list[tuple[int, PlannedCell]]] = {}
    for i, cell in cells:
        of_row.setdefault(cell.row_index, []).append((i, cell))
    order = sorted(of_row, key=lambda r: (order_key(step.rows[r].weights or ()), r))
    current: Row | None = None
    batches: list[dict[str, Any]] = []
    for r in order:
        row = step.rows[r]
        if current is None or current.weights != row.weights:
            apply_row(backend, row)
            current = row
        chunks = _chunks(of_row[r], size)
        for chunk in chunks:
            _draw(backend, step, chunk, out)
        batches.append({"rows": [row.label], "calls": len(chunks)})
    return batches


def _draw(
    backend: Backend,
    step: Compare,
    chunk: list[tuple[int, PlannedCell]],
    out: InOrder,
    mixed: tuple[list[str], dict[str, float]] | None = None,
) -> None:
    """One pipeline call of CHUNK's cells (MIXED: each run by its own adapter, at the
    scales given), each cell's images handed out."""
    args = step.args
    if isinstance(args, ImageArguments) and isinstance(args.negative_prompt, tuple):
        negatives = tuple(args.negative_prompt[c.prompt_index] for _, c in chunk)
        args = replace(args, negative_prompt=negatives)  # each cell's prompt's
    call = replace(
        cell_step(step, chunk[0][1]), prompts=tuple(c.prompt for _, c in chunk), args=args
    )
    seeds = [c.seed for _, c in chunk]
    if mixed is None:
        assert isinstance(backend, DrawsCells)
        pictures = backend.generate_cells(call, seeds)
    else:
        assert isinstance(backend, MixesPictures)
        pictures = backend.draw_mixed(call, seeds, *mixed)
    per_cell = step.args.per_prompt
    for n, (i, _) in enumerate(chunk):
        out.put(i, pictures[n * per_cell : (n + 1) * per_cell])


def fastest(
    backend: Backend, step: Compare, cells: list[PlannedCell], done: Done
) -> dict[str, Any]:
    """The fastest executor the backend allows; every one makes the same outputs."""
    if isinstance(backend, MixesAdapters):
        return mixed(backend, step, cells, done)
    if isinstance(backend, MixesPictures):
        return mixed_images(backend, step, cells, done)
    if isinstance(backend, DrawsCells):
        return by_rows(backend, step, cells, done)
    return one_by_one(backend, step, cells, done)


EXECUTOR: Executor = fastest
