"""A step's `expect:` checked against what it made (CONTRACT section 9).

Text checks (`contains`, `not_contains`, `equals`, `regex` with re.search) look at every
completion of a generate step, and at every cell of a compare's non-base rows (every row
where the compare has no `base` row). `differs_from_base` fails for each no-op row;
`min_distance` for each non-base cell whose `mean_abs` (images) or `kl` (text) is below it.
A failed expectation fails nothing else: the run goes on and finishes succeeded. Text
expectations taken from data (`{data, field}`: one value per record) also score a compare:
each row's `accuracy`, the base row's included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.record import cells as c
from runner.record import manifest as m
from runner.spec.expect import Expect
from runner.spec.types import Row


@dataclass(frozen=True)
class Checked:
    """One cell (or one completion of a generate step) as the checks see it."""

    row: str | None  # None: a generate step's completion
    prompt_index: int
    prompt: str
    seed: int
    text: str | None = None
    distance: dict[str, Any] | None = None
    base: bool = False  # a cell of the compare's base row


def check(
    expect: Expect, made: list[Checked], rows: list[m.RowSummary] | None
) -> list[m.ExpectationResult]:
    """Every expectation of EXPECT against MADE (and a compare's ROWS summary)."""
    results = []
    if expect.differs_from_base:
        failed = [
            m.FailedCell("changed nothing: every cell equals its base cell", row=r.row)
            for r in rows or []
            if r.noop
        ]
        results.append(_result("differs_from_base", True, failed))
    if expect.min_distance is not None:
        far = _far(expect.min_distance, made)
        results.append(_result("min_distance", expect.min_distance, far))
    texts = [cell for cell in made if not cell.base and cell.text is not None]
    for kind, value in expect.texts:
        failed = []
        for cell in texts:
            wanted = value.for_prompt(cell.prompt_index)
            problem = _text_problem(kind, wanted, cell.text or "")
            if problem:
                failed.append(m.FailedCell(problem, cell.row, cell.prompt, cell.seed))
        results.append(_result(kind, value.shown(), failed))
    return results


def accuracy(expect: Expect, made: list[Checked], rows: tuple[Row, ...]) -> list[m.ScoreRow]:
    """Each row's `accuracy`, the base row's too: the fraction of its cells that pass every
    text expectation taken from data (none: no rows)."""
    kinds = [(kind, value) for kind, value in expect.texts if value.data is not None]
    if not kinds:
        return []
    summaries = []
    for row in rows:
        mine = [cell for cell in made if cell.row == row.label]
        right = sum(
            all(
                _text_problem(k, v.for_prompt(c.prompt_index), c.text or "") is None
                for k, v in kinds
            )
            for c in mine
        )
        weights = None if row.weights is None else dict(row.weights)
        summaries.append(
            m.ScoreRow(row.label, weights, len(mine), accuracy=right / max(1, len(mine)))
        )
    return summaries


def of_generate(results: list[Any], prompts: int) -> list[Checked]:
    """A generate step's completions or pictures, each with its prompt's index."""
    per = max(1, len(results) // max(1, prompts))
    return [
        Checked(None, i // per, r.prompt, r.seed, text=getattr(r, "text", None))
        for i, r in enumerate(results)
    ]


def of_compare(
    cells: list[c.CellRecord], row_of: list[int], base: int | None, prompts: int
) -> list[Checked]:
    """A compare's cells in plan order (ROW_OF: each one's row index), each with its
    prompt's index."""
    count: dict[int, int] = {}
    for r in row_of:
        count[r] = count.get(r, 0) + 1
    seen: dict[int, int] = {}
    checked = []
    for cell, r in zip(cells, row_of, strict=True):
        k = seen.get(r, 0)
        seen[r] = k + 1
        per = max(1, count[r] // max(1, prompts))
        checked.append(
            Checked(cell.row, k // per, cell.prompt, cell.seed, cell.text, cell.distance, r == base)
        )
    return checked


def failed(results: list[m.ExpectationResult] | None) -> list[str]:
    """A line for each failed expectation, for the terminal."""
    lines = []
    for r in results or []:
        if not r.passed:
            first = r.failing[0] if r.failing else None
            where = "" if first is None else f" ({_where(first)}: {first.detail})"
            unit = "row" if r.name == "differs_from_base" else "cell"
            lines.append(
                f"expectation failed: {r.name} in {r.failing_count} "
                f"{unit}{'s' * (r.failing_count != 1)}{where}"
            )
    return lines


def _where(cell: m.FailedCell) -> str:
    parts = [f"row {cell.row}"] if cell.row is not None else []
    if cell.prompt is not None:
        parts.append(f"prompt {cell.prompt!r}")
    if cell.seed is not None:
        parts.append(f"seed {cell.seed}")
    return ", ".join(parts)


def _far(minimum: float, made: list[Checked]) -> list[m.FailedCell]:
    failed = []
    for cell in made:
        if cell.base or cell.distance is None:
            continue
        key = "mean_abs" if "mean_abs" in cell.distance else "kl"
        found = cell.distance.get(key)
        if found is None or found < minimum:
            detail = f"{key} {found} < {minimum:g}" if found is not None else f"no {key}"
            failed.append(m.FailedCell(detail, cell.row, cell.prompt, cell.seed))
    return failed


def _text_problem(kind: str, wanted: str, text: str) -> str | None:
    """Why TEXT fails the check KIND with WANTED, or None where it passes."""
    shown = _cut(text)
    if kind == "contains" and wanted not in text:
        return f"{shown} does not contain {wanted!r}"
    if kind == "not_contains" and wanted in text:
        return f"{shown} contains {wanted!r}"
    if kind == "equals" and text != wanted:
        return f"{shown} is not {_cut(wanted)}"
    if kind == "regex" and re.search(wanted, text) is None:
        return f"{shown} does not match /{wanted}/"
    return None


def _cut(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _result(name: str, expected: Any, failed: list[m.FailedCell]) -> m.ExpectationResult:
    return m.ExpectationResult(
        name=name,
        passed=not failed,
        expected=expected,
        failing=failed[: m.FAILED_CELLS_KEPT],
        failing_count=len(failed),
    )
