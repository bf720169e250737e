"""Read, check and build a spec file: the first three phases, with no model library imported."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runner.errors import Located, SpecError, step_label
from runner.spec import plain
from runner.spec.checks import meaning_problems
from runner.spec.document import MAX_BYTES, read
from runner.spec.schema import schema_problems
from runner.spec.types import Spec, from_document


def load(file: Path, *, base_dir: Path | None = None) -> Spec:
    """Read FILE and return its typed spec, or raise SpecError with every problem found.

    Relative local paths in the spec resolve against BASE_DIR, by default the file's folder.
    """
    base_dir = base_dir or file.resolve().parent
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # no more: a device or a pipe may never end
    except OSError as exc:
        raise SpecError([Located(1, 1, "$", unreadable(exc), str(file))]) from None
    return load_bytes(raw, file, base_dir)


def load_bytes(raw: bytes, file: Path, base_dir: Path) -> Spec:
    """The typed spec from RAW, as if read from FILE."""
    try:
        doc = read(raw, str(file))
    except SpecError as exc:  # the document could not be built: no op to name
        raise SpecError(_in_steps(exc.problems, None)) from None
    problems = schema_problems(doc, raw) + meaning_problems(doc, base_dir)
    if problems:
        raise SpecError(_unique(_in_steps(problems, doc.data)))
    return from_document(doc.data, doc.values, file, raw, base_dir)


def load_data(data: dict[str, Any], base_dir: Path) -> Spec:
    """The typed spec from Python data, checked as a file holding it as JSON would be; its
    problems are located by JSON path alone (`<dict>: step 1 (generate): seed: ...`)."""
    problems = plain.problems(data)
    if problems:
        raise SpecError(_in_steps(problems, data))
    raw = plain.as_text(data).encode("utf-8")
    try:
        return load_bytes(raw, Path(f"{plain.FILE}.yaml"), base_dir)
    except SpecError as exc:
        raise SpecError(_unique([plain.unplaced(p) for p in exc.problems])) from None


def _in_steps(problems: list[Located], data: object) -> list[Located]:
    """PROBLEMS with each one inside a step named as a run names it (`step 2 (generate)`)."""
    steps = data.get("steps") if isinstance(data, dict) else None
    ops = (
        [s.get("op") if isinstance(s, dict) else None for s in steps]
        if isinstance(steps, list)
        else []
    )
    return [dataclasses.replace(p, step=step_label(p.path, ops)) for p in problems]


def _unique(problems: list[Located]) -> list[Located]:
    """The schema and the meaning checks can both catch one thing; say it once."""
    return list(dict.fromkeys(problems))


def unreadable(exc: OSError) -> str:
    """Why a spec file cannot be read, as a person would say it."""
    if isinstance(exc, FileNotFoundError):
        return "the spec file does not exist"
    if isinstance(exc, IsADirectoryError):
        return "this is a folder, not a spec file"
    return f"cannot read the spec: {exc.strerror}"
