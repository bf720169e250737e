"""Meaning checks of score steps: a causal LM's op, continuation or choices and label, one
value or one per record throughout, every label one of its record's choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.spec import data as d
from runner.spec.datachecks import USES, data_sets
from runner.spec.document import Document, Path_

VALUES = ("context", "continuation", "choices", "label")


def problems(doc: Document, data: dict[str, Any], base_dir: Path) -> list[Located]:
    steps = data.get("steps")
    scores = [
        (i, s)
        for i, s in enumerate(steps if isinstance(steps, list) else [])
        if isinstance(s, dict) and s.get("op") == "score"
    ]
    if not scores:
        return []
    model = data.get("model")
    family = model.get("family") if isinstance(model, dict) else None
    sets = data_sets(data, base_dir)
    out: list[Located] = []
    for i, step in scores:
        out += _step(doc, ("steps", i), step, family, sets)
    return out


def _step(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    family: Any,
    sets: dict[str, d.DataSet | d.DataError],
) -> list[Located]:
    if family == "diffusers":
        message = "op: score needs a causal LM: model.family transformers, not diffusers"
        return [doc.problem((*here, "op"), message)]
    given = [k for k in VALUES if k in step]
    if ("continuation" in step) == ("choices" in step) or ("choices" in step) != ("label" in step):
        message = "a score step takes either continuation, or choices and label"
        return [doc.problem(here, message)]
    values: dict[str, list[Any]] = {}
    for key in given:
        value = _values(step[key], key, sets)
        if value is None:
            return []  # a data problem, reported by the data checks
        if key == "choices" and not isinstance(step[key], dict):
            if len({isinstance(c, list) for c in value}) > 1:
                message = "choices: a list of strings (for every record) or a list of such lists"
                return [doc.problem((*here, "choices"), message)]
            if not any(isinstance(c, list) for c in value):
                value = [value]  # one list of choices for every record
        values[key] = value
    counts = {k: len(v) for k, v in values.items() if len(v) != 1}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{k} {n}" for k, n in counts.items())
        message = f"each of {', '.join(counts)} must be one value or one per record ({shown})"
        return [doc.problem(here, message)]
    if "choices" not in values:
        return []
    choices, labels = values["choices"], values["label"]
    out = []
    records = max(len(choices), len(labels))
    for n in range(records):
        options = choices[n if len(choices) > 1 else 0]
        label = labels[n if len(labels) > 1 else 0]
        if isinstance(label, int) and not 0 <= label < len(options):
            message = f"record {n}: label {label} is not one of its {len(options)} choices"
            out.append(doc.problem((*here, "label"), message))
            break
    return out


def _values(value: Any, key: str, sets: dict[str, d.DataSet | d.DataError]) -> list[Any] | None:
    """The value as a list (one per record where it is); None where its data is at fault."""
    if isinstance(value, dict) and d.is_ref(value):
        ref = d.ref(value)
        found = sets.get(ref.data)
        if not isinstance(found, d.DataSet):
            return None
        try:
            return [
                list(v) if isinstance(v, tuple) else v for v in found.values(ref.field, USES[key])
            ]
        except d.DataError:
            return None
    if key == "choices":
        return list(value) if isinstance(value, list) else None
    return value if isinstance(value, list) else [value]
