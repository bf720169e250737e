"""A score step: every (row, record) scored, its cells written, each row summarised.

A request is one (context, continuation) pair: a record's continuation, or each of its
choices. Each pair is encoded once (lm-eval's way, runner.backends.likelihood) and scored
under every row. Rows the backend can mix share batches, each batch row run by its own
adapter (peft's `adapter_names`, as compare's `mixed` executor does); a row it cannot mix,
or whose batch the model refuses, runs alone with its setting applied. Batches hold the
longest requests first, as lm-eval orders them, so padding stays small.

Cells (`scores.jsonl`, by row then record) hold the row, its adapters, the record's index,
`loglik`, `tokens` and `is_greedy`; with choices, those of the right choice, each choice's,
`acc` (the most likely choice is the right one) and `acc_norm` (the same, each loglik over
its choice's length in characters), as lm-eval's multiple_choice defines them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from runner.backends.base import Backend, CannotMix, MixesAdapters, ScoresText
from runner.errors import StepError
from runner.record import layout
from runner.record import manifest as m
from runner.record.recorder import Recorder
from runner.results import Likelihood
from runner.running.compare import _groups, apply_row
from runner.spec.types import Score
from runner.spec.weights import Weight

Pair = tuple[list[int], list[int]]


@dataclass
class Scored:
    """What a score step made: its file, its notes, how it ran, each row's summary."""

    outputs: list[m.Output]
    notes: list[str]
    execution: dict[str, Any]
    rows: list[m.ScoreRow] = field(default_factory=list)


def requests(step: Score) -> list[list[tuple[str, str]]]:
    """Each record's (context, continuation) pairs: one, or one per choice."""
    if step.choices is not None:
        return [[(c, x) for x in xs] for c, xs in zip(step.contexts, step.choices, strict=True)]
    assert step.continuations is not None
    return [[pair] for pair in zip(step.contexts, step.continuations, strict=True)]


def score(backend: Backend, step: Score, recorder: Recorder, folder: str) -> Scored:
    if not isinstance(backend, ScoresText):
        raise StepError("op: score needs a causal LM (model.family transformers)")
    asked = requests(step)
    flat = [(i, pair) for i, pairs in enumerate(asked) for pair in pairs]
    encoded = [backend.encode_pair(*pair) for _, pair in flat]
    for (i, (_, continuation)), (_, cont) in zip(flat, encoded, strict=True):
        if not cont:
            raise StepError(f"record {i}: continuation {continuation!r} has no tokens of its own")
    found: dict[tuple[int, int], Likelihood] = {}
    execution = _run(backend, step, encoded, found)
    cells, rows = [], []
    for r, row in enumerate(step.rows):
        weights = None if row.weights is None else dict(row.weights)
        k, mine = 0, []
        for i, pairs in enumerate(asked):
            scored = [found[(r, k + j)] for j in range(len(pairs))]
            k += len(pairs)
            mine.append(_cell(step, i, scored))
        cells += [{"row": row.label, "adapters": weights, **c} for c in mine]
        rows.append(_summary(row.label, weights, mine))
    text = "".join(json.dumps(c, ensure_ascii=False, allow_nan=False) + "\n" for c in cells)
    output = recorder.write(f"{folder}/{layout.SCORES}", text.encode("utf-8"))
    shape = f"{len(step.rows)} rows x {len(asked)} records"
    notes = [f"{len(cells)} scores ({shape}) in {output.path}"]
    notes += [_note(s) for s in rows]
    return Scored([output], notes, {**execution, "requests": len(encoded)}, rows)


def _cell(step: Score, record: int, scored: list[Likelihood]) -> dict[str, Any]:
    if step.choices is None:
        (one,) = scored
        return {
            "record": record,
            "loglik": one.loglik,
            "tokens": one.tokens,
            "is_greedy": one.is_greedy,
        }
    assert step.labels is not None
    gold, choices = step.labels[record], step.choices[record]
    logliks = [s.loglik for s in scored]
    normed = [s.loglik / len(c) for s, c in zip(scored, choices, strict=True)]
    right = scored[gold]
    return {
        "record": record,
        "label": gold,
        "loglik": right.loglik,
        "tokens": right.tokens,
        "is_greedy": right.is_greedy,
        "choices": [
            {"loglik": s.loglik, "tokens": s.tokens, "is_greedy": s.is_greedy} for s in scored
        ],
        "acc": float(_first_max(logliks) == gold),
        "acc_norm": float(_first_max(normed) == gold),
    }


def _first_max(values: list[float]) -> int:
    """The index of the largest value, the first of equals (numpy's argmax)."""
    return max(range(len(values)), key=lambda n: (values[n], -n))


def _summary(
    label: str, weights: dict[str, Weight] | None, cells: list[dict[str, Any]]
) -> m.ScoreRow:
    total = sum(c["loglik"] for c in cells)
    tokens = sum(c["tokens"] for c in cells)
    try:
        perplexity: float | None = math.exp(-total / tokens)
    except OverflowError:
        perplexity = None
    summary = m.ScoreRow(label, weights, len(cells), total / len(cells), tokens, perplexity)
    if cells and "acc" in cells[0]:
        summary.acc = sum(c["acc"] for c in cells) / len(cells)
        summary.acc_norm = sum(c["acc_norm"] for c in cells) / len(cells)
    return summary


def _note(row: m.ScoreRow) -> str:
    text = f"{row.row}: loglik {row.loglik:.4f}"
    text += f", perplexity {row.perplexity:.4g}" if row.perplexity is not None else ""
    if row.acc is not None:
        text += f", acc {row.acc:.3f}, acc_norm {row.acc_norm:.3f}"
    return text


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def _run(
    backend: ScoresText, step: Score, encoded: list[Pair], found: dict[tuple[int, int], Likelihood]
) -> dict[str, Any]:
    """Score every (row, request) into FOUND; returns how, for the step's record."""
    order = sorted(range(len(encoded)), key=lambda k: -len(encoded[k][0] + encoded[k][1]))
    longest = len(encoded[order[0]][0] + encoded[order[0]][1]) if order else 1
    size = backend.score_batch_size(longest)
    batches: list[dict[str, Any]] = []
    lanes: list[tuple[str, float] | None] = [None] * len(step.rows)
    refused = ""
    try:
        if isinstance(backend, MixesAdapters):
            lanes = [backend.mix(None if r.weights is None else dict(r.weights)) for r in step.rows]
        for rows, scales in _groups(lanes):
            # longest first across the group's rows; within a batch, each row's side by side
            jobs = [(r, k) for k in order for r in rows]
            chunks = _chunks(jobs, size)
            try:
                for chunk in chunks:
                    chunk.sort(key=lambda j: j[0])
                    names = [lanes[r][0] for r, _ in chunk]  # type: ignore[index]
                    made = backend.loglikelihoods([encoded[k] for _, k in chunk], names, scales)
                    found.update(zip(chunk, made, strict=True))
            except CannotMix as why:
                refused = str(why)
                lanes = [None if r in rows else lane for r, lane in enumerate(lanes)]
                continue
            labels = [step.rows[r].label for r in rows]
            batches.append({"rows": labels, "mixed": True, "calls": len(chunks)})
        for r in (r for r, lane in enumerate(lanes) if lane is None):
            apply_row(backend, step.rows[r])  # type: ignore[arg-type]
            chunks = _chunks(order, size)
            for chunk in chunks:
                made = backend.loglikelihoods([encoded[k] for k in chunk])
                found.update(zip(((r, k) for k in chunk), made, strict=True))
            batches.append({"rows": [step.rows[r].label], "mixed": False, "calls": len(chunks)})
    finally:
        if isinstance(backend, MixesAdapters):
            backend.unmix()
    calls = sum(b["calls"] for b in batches)
    record = {"executor": "mixed", "calls": calls, "batch_size": size, "batches": batches}
    return {**record, "why": f"the model refused a mixed batch: {refused}"} if refused else record
