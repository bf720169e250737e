"""What a step may say about adapters: declared, loaded by then, one PEFT type at a time.

The wording of each rule lives here once; `checks` uses it for load and set_adapters, and
`compare_problems` for the rows of a compare step.
"""

from __future__ import annotations

import difflib
from typing import Any

from runner.errors import Located
from runner.spec import rows, vocabulary
from runner.spec.defaults import generate_defaults, with_defaults
from runner.spec.document import Document, Path_
from runner.spec.values import is_int, is_number


def not_declared(name: str, declared: dict[str, Any]) -> str:
    listing = ", ".join(sorted(declared)) or "none"
    close = _close(name, declared)
    return f"adapter '{name}' is not declared under adapters{close} (declared: {listing})"


def _close(name: str, declared: dict[str, Any]) -> str:
    """` (did you mean 'x'?)` for a declared name (or the `base` row) spelt otherwise."""
    if name.lower() == rows.BASE and name != rows.BASE:
        return f" (did you mean '{rows.BASE}', the base model's row?)"
    lowered = {str(d).lower(): str(d) for d in declared}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def not_loaded(name: str) -> str:
    return f"adapter '{name}' is not loaded at this step; load it in an earlier step"


def adapter_names(value: Any) -> list[tuple[Path_, str]]:
    """The adapter names a step's `adapters` field mentions, each with its own sub-path."""
    if isinstance(value, str):
        return [((), value)]
    if isinstance(value, list):
        return [((i,), v) for i, v in enumerate(value) if isinstance(v, str)]
    if isinstance(value, dict):
        return [((k,), k) for k in value]
    return []


def unusable(name: str, declared: dict[str, Any], loaded: dict[str, int]) -> str | None:
    """Why a step cannot use adapter NAME here (not declared, or not loaded); None: it can."""
    if name not in declared:
        return not_declared(name, declared)
    if name not in loaded:
        return not_loaded(name)
    return None


def mixed_types(found: list[tuple[str, str]]) -> str:
    listing = ", ".join(f"{n}: {t}" for n, t in found)
    return f"adapters of different PEFT types cannot be active together ({listing})"


def compare_problems(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
    types: dict[str, str | None],
) -> list[Located]:
    """A compare step's rows against what is declared and loaded by then.

    A setting written twice (`3d` beside `{3d: [0.5, 1.0]}`) is allowed: it is made twice.
    """
    written = step.get("adapters")
    if not isinstance(written, list):
        return []  # the schema says what it should be
    problems: list[Located] = []
    for j, row in enumerate(written):
        problems += _row(doc, (*here, "adapters", j), row, declared, loaded, types)
    return problems


def _shaped(row: Any) -> bool:
    """A row of a shape the schema allows."""
    if isinstance(row, str):
        return True
    if isinstance(row, list):
        return bool(row) and all(isinstance(v, str) for v in row)
    if isinstance(row, dict) and row:
        return all(
            is_number(w)
            or isinstance(w, dict)  # per component: weights.sweep_count reads any nesting
            or (isinstance(w, list) and bool(w) and all(map(is_number, w)))
            for w in row.values()
        )
    return False


def _row(
    doc: Document,
    where: Path_,
    row: Any,
    declared: dict[str, Any],
    loaded: dict[str, int],
    types: dict[str, str | None],
) -> list[Located]:
    if row == rows.BASE:
        return []
    key = isinstance(row, dict)
    problems = []
    mentioned = rows.names(row)
    for sub, name in mentioned:
        at = (*where, *sub)
        if name == rows.BASE:
            message = f"'{rows.BASE}' (the model with no adapter) is a row of its own"
            problems.append(doc.problem(at, message, key=key))
        elif name not in declared:
            problems.append(doc.problem(at, not_declared(name, declared), key=key))
        elif name not in loaded:
            problems.append(doc.problem(at, not_loaded(name), key=key))
    if isinstance(row, list):
        seen: set[str] = set()
        for sub, name in mentioned:
            if name in seen:
                twice = f"adapter '{name}' is twice in this row"
                problems.append(doc.problem((*where, *sub), twice))
            seen.add(name)
    found = [(n, t) for _, n in mentioned if (t := types.get(n))]
    if len({t for _, t in found}) > 1:
        problems.append(doc.problem(where, mixed_types(found)))
    return problems


# Rows are counted exactly up to this many; past it the refusal says "more than".
COUNTED = 10**12


def size_problems(doc: Document, data: dict[str, Any]) -> list[Located]:
    """Compare steps with more cells than their max_cells (default vocabulary.MAX_CELLS), or
    than vocabulary.CELLS_CEILING, counted arithmetically: no row is built to count them."""
    steps, defaults = data.get("steps"), generate_defaults(data)
    problems = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict) and step.get("op") == "compare":
            problems += _size(doc, ("steps", index), with_defaults(defaults, step))
    return problems


def _size(doc: Document, here: Path_, step: dict[str, Any]) -> list[Located]:
    written, prompts, seeds = step.get("adapters"), step.get("prompt"), step.get("seed")
    per_prompt = step.get("num_images_per_prompt", 1)
    limit = step.get("max_cells", vocabulary.MAX_CELLS)
    if not (isinstance(written, list) and all(map(_shaped, written))):
        return []
    if not all(is_int(v) and v > 0 for v in (per_prompt, limit)):
        return []  # the schema reports a count that is not a positive integer
    ceiling = vocabulary.CELLS_CEILING
    # The row count stops at COUNTED + 1: the shape printed is exact up to there, and
    # counting a product of weight lists never builds an astronomically large number.
    row_count = 0
    for row in written:
        row_count = min(row_count + rows.count(row, COUNTED), COUNTED + 1)
    n_prompts = len(prompts) if isinstance(prompts, list) else 1
    n_seeds = len(seeds) if isinstance(seeds, list) else 1
    cells = row_count * n_prompts * n_seeds * per_prompt
    if cells <= min(limit, ceiling):
        return []  # a max_cells above the ceiling is the schema's to report
    shape = " x ".join(
        _counted(n, what)
        for n, what in ((row_count, "row"), (n_prompts, "prompt"), (n_seeds, "seed"))
    ) + (f" x {per_prompt} images" if per_prompt > 1 else "")
    if cells > ceiling:
        made = f"more than {COUNTED}" if row_count > COUNTED else cells
        return [
            doc.problem(
                (*here, "adapters"),
                f"makes {made} cells ({shape}); one compare step makes at most "
                f"{ceiling}: split it into several compare steps",
            )
        ]
    return [
        doc.problem(
            (*here, "max_cells") if "max_cells" in step else (*here, "adapters"),
            f"makes {cells} cells ({shape}), more than {limit}; "
            f"set max_cells: {cells} on the step to allow it",
        )
    ]


def _counted(n: int, what: str) -> str:
    number = f"more than {COUNTED}" if n > COUNTED else str(n)
    return f"{number} {what}" + "s" * (n != 1)
