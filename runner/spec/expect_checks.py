"""Meaning checks of a step's `expect:` (what the schema cannot say): a regex compiles, a list
holds one value per prompt, text checks need text, distance checks need a `base` row."""

from __future__ import annotations

import re
from typing import Any

from runner.errors import Located
from runner.spec.defaults import generate_defaults, with_defaults
from runner.spec.document import Document, Path_
from runner.spec.vocabulary import GENERATING, TEXT_EXPECTATIONS


def expect_problems(
    doc: Document, data: dict[str, Any], steps: list[Any], family: Any
) -> list[Located]:
    """Every problem of every generating step's `expect:`."""
    defaults = generate_defaults(data)
    problems: list[Located] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in GENERATING:
            continue
        expect = step.get("expect")
        if not isinstance(expect, dict):
            continue
        here: Path_ = ("steps", index, "expect")
        prompts = with_defaults(defaults, step).get("prompt")
        count = len(prompts) if isinstance(prompts, list) else 1
        problems += _distance(doc, here, step, expect)
        for kind in TEXT_EXPECTATIONS:
            if kind not in expect:
                continue
            value = expect[kind]
            if family == "diffusers":
                problems.append(
                    doc.problem(
                        (*here, kind),
                        f"'{kind}' checks text, but model.family is diffusers",
                        key=True,
                    )
                )
                continue
            if isinstance(value, list) and len(value) != count:
                problems.append(
                    doc.problem(
                        (*here, kind),
                        f"{kind} has {len(value)} entries for {count} prompt{'s' * (count != 1)}; "
                        "give one per prompt, or one string for all",
                    )
                )
            if kind == "regex":
                problems += _patterns(doc, (*here, kind), value)
    return problems


def _distance(
    doc: Document, here: Path_, step: dict[str, Any], expect: dict[str, Any]
) -> list[Located]:
    """differs_from_base and min_distance measure a compare's rows against its `base` row."""
    wanted = [
        k for k in ("differs_from_base", "min_distance") if expect.get(k) not in (None, False)
    ]
    if not wanted:
        return []
    rows = step.get("adapters")
    if step.get("op") == "compare" and isinstance(rows, list) and "base" in rows:
        return []
    where = "a generate step" if step.get("op") == "generate" else "a compare without a base row"
    return [
        doc.problem(
            (*here, k),
            f"{k} measures rows against a compare's `base` row, but this is {where}",
            key=True,
        )
        for k in wanted
    ]


def _patterns(doc: Document, field: Path_, value: Any) -> list[Located]:
    written: list[tuple[Path_, Any]] = (
        [((), value)] if isinstance(value, str) else [((i,), v) for i, v in enumerate(value or [])]
    )
    problems = []
    for sub, pattern in written:
        if not isinstance(pattern, str):
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(doc.problem((*field, *sub), f"not a regular expression: {exc}"))
    return problems
