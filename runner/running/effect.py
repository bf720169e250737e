"""What each row of a compare changed: every non-base cell's distance from the base cell of
the same prompt and seed, the difference pictures, and the step's `rows` summary with its
no-op rows (CONTRACT section 9). The arithmetic is runner.running.distance.

Run after the cells are made and before the model is put back: `kl` takes two teacher-forced
forwards of the prompt and the base completion, one with the row's adapters and one without
(the base one once per prompt and completion). They are separate forwards, each cell alone,
so a row's `kl` does not depend on which rows share a batch.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from runner.backends.base import Backend, ScoresTokens
from runner.record import layout
from runner.record import manifest as m
from runner.running import distance
from runner.running.cellwriter import CellWriter
from runner.running.compare import PlannedCell, apply_row, cell_step
from runner.spec.types import Compare


def base_row(step: Compare) -> int | None:
    """The index of the step's `base` row (the first row without adapters), or None."""
    return next((r for r, row in enumerate(step.rows) if row.weights is None), None)


def measure(backend: Backend, step: Compare, writer: CellWriter) -> list[m.RowSummary] | None:
    """Set every non-base cell's distance and noop in WRITER, write the difference pictures
    and return the step's rows summary; None for a step without a `base` row."""
    base = base_row(step)
    cells = writer.cells
    if base is None or not cells:
        return None
    blocks: dict[int, list[int]] = {}  # row -> its cells' indexes, in plan order
    for i, r in enumerate(writer.row_of):
        blocks.setdefault(r, []).append(i)
    if len(blocks) != len(step.rows) or len({len(b) for b in blocks.values()}) != 1:
        return None  # a row made a different number of results: no cell-to-cell pairing
    reference = blocks[base]
    per_prompt = len(reference) // len(step.prompts)
    kls = _kls(backend, step, writer, blocks, base, per_prompt)
    summaries = []
    for r, mine in sorted(blocks.items()):
        if step.rows[r].weights is None:  # base, or base again
            continue
        found = []
        for k, i in enumerate(mine):
            theirs = cells[reference[k]]
            if cells[i].image is not None:
                found.append(_pictures(writer, cells[i].image or "", theirs.image or ""))
            else:
                d = distance.token_distance(theirs.token_ids or [], cells[i].token_ids or [])
                found.append({**d, "kl": kls.get(i)})
        noop = bool(found) and all(distance.equal(d) for d in found)
        for i, d in zip(mine, found, strict=True):
            cells[i] = replace(cells[i], distance=d, noop=noop)
        summaries.append(distance.summary(step.rows[r].label, found))
    return summaries


def _pictures(writer: CellWriter, image: str, base_image: str) -> dict[str, Any]:
    """Distance of IMAGE from BASE_IMAGE, read back from the step's folder (the writer keeps
    no images), and its difference picture written beside it."""
    from PIL import Image

    run, folder = writer.recorder.run, writer.folder
    with Image.open(run / folder / image) as a, Image.open(run / folder / base_image) as b:
        found, picture = distance.image_distance(a, b)
    data = io.BytesIO()
    picture.save(data, format="PNG")
    rel = f"{folder}/{layout.difference(image)}"
    writer.outputs.append(writer.recorder.write(rel, data.getvalue()))
    return found


def _kls(
    backend: Backend,
    step: Compare,
    writer: CellWriter,
    blocks: dict[int, list[int]],
    base: int,
    per_prompt: int,
) -> dict[int, float]:
    """Cell index -> kl, for text cells of a backend that ScoresTokens (else empty)."""
    cells = writer.cells
    if not isinstance(backend, ScoresTokens) or cells[0].image is not None:
        return {}

    def generate_of(k: int) -> Any:
        p = k // per_prompt
        return cell_step(step, PlannedCell(step.rows[base], base, p, step.prompts[p], 0))

    reference = blocks[base]
    apply_row(backend, step.rows[base])
    theirs: dict[tuple[int, tuple[int, ...]], Any] = {}
    for k, i in enumerate(reference):
        key = (k // per_prompt, tuple(cells[i].token_ids or []))
        if key not in theirs:
            theirs[key] = backend.next_token_logprobs(generate_of(k), list(key[1]))
    found: dict[int, float] = {}
    for r, mine in sorted(blocks.items()):
        if step.rows[r].weights is None:
            continue
        apply_row(backend, step.rows[r])
        seen: dict[tuple[int, tuple[int, ...]], float] = {}
        for k, i in enumerate(mine):
            key = (k // per_prompt, tuple(cells[reference[k]].token_ids or []))
            if key not in seen:
                row = backend.next_token_logprobs(generate_of(k), list(key[1]))
                seen[key] = round(distance.mean_kl(row, theirs[key]), 9)
            found[i] = seen[key]
    return found
