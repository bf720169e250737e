"""Meaning checks of data files: each declared file read, each `{data, field}` reference
naming a declared data set whose every record holds the field, of the kind it is used as.

A problem of the file itself is located in the file (`specs/data/qa.jsonl:7:1: data.qa:
not a JSON object`); a reference to an undeclared set, at the reference in the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.spec import data as d
from runner.spec.document import Document, Path_
from runner.spec.vocabulary import TEXT_EXPECTATIONS

# Where a step may take a field of a data set, and what the field must hold there.
USES: dict[str, str] = {
    "prompt": d.STRING,
    "context": d.STRING,
    "continuation": d.STRING,
    "choices": d.STRINGS,
    "label": d.INDEX,
    "text": d.STRING,  # train
    "completion": d.STRING,  # train
}


def data_sets(data: dict[str, Any], base_dir: Path) -> dict[str, d.DataSet | d.DataError]:
    """Every data set the spec declares, read, or the DataError that reading it raised."""
    declared = data.get("data")
    found: dict[str, d.DataSet | d.DataError] = {}
    for name, entry in (declared if isinstance(declared, dict) else {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue  # the schema says what it should be
        try:
            found[name] = d.read(name, entry["path"], base_dir)
        except d.DataError as exc:
            found[name] = exc
    return found


def refs(data: dict[str, Any]) -> list[tuple[Path_, str, d.Ref]]:
    """Every reference of the spec: where it is written, what the field must hold, the ref."""
    out: list[tuple[Path_, str, d.Ref]] = []
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            out += _refs_in(("steps", i), step)
    defaults = data.get("defaults")
    generate = defaults.get("generate") if isinstance(defaults, dict) else None
    if isinstance(generate, dict):
        out += _refs_in(("defaults", "generate"), generate)
    return out


def _refs_in(here: Path_, mapping: dict[str, Any]) -> list[tuple[Path_, str, d.Ref]]:
    found = [
        ((*here, key), USES[key], d.ref(value))
        for key, value in mapping.items()
        if key in USES and _written(value)
    ]
    expect = mapping.get("expect")
    if isinstance(expect, dict):  # a text expectation: one string per record
        found += [
            ((*here, "expect", key), d.STRING, d.ref(value))
            for key, value in expect.items()
            if key in TEXT_EXPECTATIONS and _written(value)
        ]
    return found


def _written(value: Any) -> bool:
    """Whether VALUE is a reference whose names are strings (the schema says the rest)."""
    return d.is_ref(value) and all(isinstance(v, str) for v in value.values())


def problems(doc: Document, data: dict[str, Any], base_dir: Path) -> list[Located]:
    sets = data_sets(data, base_dir)
    out = [
        _in_file(doc, base_dir, name, found)
        for name, found in sets.items()
        if isinstance(found, d.DataError)
    ]
    for where, kind, ref in refs(data):
        found = sets.get(ref.data)
        if found is None:
            listing = ", ".join(sorted(sets)) or "none"
            message = f"data '{ref.data}' is not declared under data (declared: {listing})"
            out.append(doc.problem((*where, "data"), message))
        elif isinstance(found, d.DataSet):
            try:
                found.values(ref.field, kind)
            except d.DataError as exc:
                out.append(_in_file(doc, base_dir, ref.data, exc))
    return out


def _in_file(doc: Document, base_dir: Path, name: str, error: d.DataError) -> Located:
    """ERROR located in the data file, its path shown as the spec's folder makes it."""
    if error.line == 0:  # the file as a whole: at its path in the spec
        where = doc.at(("data", name, "path"))
        message = f"{error.file}: {error.message}"
        return Located(where[0], where[1], f"data.{name}.path", message, doc.file)
    shown = error.file
    if not Path(shown).is_absolute() and Path(doc.file).parent != Path("."):
        shown = str(Path(doc.file).parent / shown)
    return Located(error.line, 1, f"data.{name}", error.message, shown)


def counted(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """DATA with each step's `prompt` reference replaced by one placeholder per record, so
    that the size checks count a compare's cells as the run will make them, and each text
    expectation's reference by its values, so that the expectation checks count and compile
    them. A reference that cannot be read stays (datachecks.problems says why)."""
    steps = data.get("steps")
    if not isinstance(steps, list) or not isinstance(data.get("data"), dict):
        return data
    sets = data_sets(data, base_dir)
    out = []
    for step in steps:
        prompt = step.get("prompt") if isinstance(step, dict) else None
        if isinstance(prompt, dict) and d.is_ref(prompt):
            found = sets.get(str(prompt["data"]))
            if isinstance(found, d.DataSet):
                step = {**step, "prompt": [""] * len(found.records)}
        expect = step.get("expect") if isinstance(step, dict) else None
        if isinstance(expect, dict):
            step = {**step, "expect": {k: _values(sets, v) for k, v in expect.items()}}
        out.append(step)
    return {**data, "steps": out}


def _values(sets: dict[str, d.DataSet | d.DataError], value: Any) -> Any:
    """A text expectation's reference as its strings, one per record; VALUE otherwise."""
    if not _written(value):
        return value
    found = sets.get(value["data"])
    try:
        return list(found.values(value["field"])) if isinstance(found, d.DataSet) else value
    except d.DataError:
        return value
