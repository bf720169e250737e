"""Data files: named record sets a spec reads from a file, and the references to their fields.

`data: {qa: {path: eval/qa.jsonl}}` names a record set; `{data: qa, field: question}` stands,
wherever prompts, contexts, continuations, choices or labels go, for that field of every
record in file order. A path resolves against the spec's folder; the name is only a key,
never part of a path. Three formats, by suffix: `.jsonl` (one JSON object a line), `.csv`
(a header row, then one record a row) and `.txt` (one record a line, as field `text`);
blank lines hold no record. A file is at most MAX_BYTES and MAX_RECORDS records, UTF-8.
Every problem is a DataError located in the data file itself (`qa.jsonl:7: not a JSON
object`). Plain Python only: validation reads data files without any model library.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 100_000
FORMATS = (".jsonl", ".csv", ".txt")
TEXT_FIELD = "text"  # the one field of a .txt record

# What a field must hold where a reference is used.
STRING, STRINGS, INDEX = "a string", "a list of strings", "an integer"


class DataError(Exception):
    """A problem of a data file: FILE (as the spec names it), LINE (0: the whole file)."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


@dataclass(frozen=True)
class DataSet:
    """One data file as read: its records (JSON-shaped mappings) and the line of each."""

    name: str
    written: str  # the path as the spec writes it
    path: Path  # where it was read from
    sha256: str
    records: tuple[dict[str, Any], ...]
    lines: tuple[int, ...]  # the file's line of each record, 1-based

    def values(self, field: str, kind: str = STRING) -> tuple[Any, ...]:
        """FIELD of every record, in file order, each checked to be KIND; a DataError at
        the first record that lacks it or holds something else."""
        out = []
        for record, line in zip(self.records, self.lines, strict=True):
            if field not in record:
                have = ", ".join(sorted(record)) or "none"
                raise DataError(self.written, line, f"no field '{field}' (fields: {have})")
            out.append(_as(record[field], kind, self.written, line, field))
        return tuple(out)


@dataclass(frozen=True)
class Ref:
    """`{data: NAME, field: F}`: field F of every record of data set NAME."""

    data: str
    field: str


def is_ref(value: Any) -> bool:
    """Whether VALUE is written as a reference to a data field."""
    return isinstance(value, dict) and set(value) == {"data", "field"}


def ref(value: dict[str, Any]) -> Ref:
    return Ref(str(value["data"]), str(value["field"]))


def resolve(written: str, base_dir: Path) -> Path:
    """Where a data path as the spec writes it lies: against the spec's folder."""
    path = Path(written).expanduser()
    return path if path.is_absolute() else base_dir / path


def read(name: str, written: str, base_dir: Path) -> DataSet:
    """Read data set NAME from the path WRITTEN (relative to BASE_DIR); DataError if not."""
    path = resolve(written, base_dir)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(written, 0, f"unknown data format '{suffix}': expected {_formats()}")
    if not path.is_file():
        why = "is not a file" if path.exists() else "does not exist"
        raise DataError(written, 0, f"{why} (resolved to {path})")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise DataError(written, 0, f"cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise DataError(written, 0, f"larger than {MAX_BYTES:,} bytes, the most a data file holds")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(written, line, f"not UTF-8 text ({exc.reason})") from None
    pairs = _PARSERS[suffix](text, written)
    if not pairs:
        raise DataError(written, 0, "holds no records")
    lines, records = zip(*pairs, strict=True)
    digest = hashlib.sha256(raw).hexdigest()
    return DataSet(name, written, path, digest, tuple(records), tuple(lines))


def _formats() -> str:
    return ", ".join(FORMATS)


def _counted(pairs: list[tuple[int, dict[str, Any]]], written: str, line: int) -> None:
    if len(pairs) >= MAX_RECORDS:
        raise DataError(
            written, line, f"more than {MAX_RECORDS:,} records, the most a data file holds"
        )


def _jsonl(text: str, written: str) -> list[tuple[int, dict[str, Any]]]:
    pairs: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        _counted(pairs, written, number)
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise DataError(written, number, f"not JSON: {reason}") from None
        if not isinstance(value, dict):
            raise DataError(written, number, "not a JSON object")
        pairs.append((number, value))
    return pairs


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _csv(text: str, written: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    pairs: list[tuple[int, dict[str, Any]]] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                twice = sorted({h for h in header if header.count(h) > 1})
                if twice:
                    raise DataError(
                        written, reader.line_num, f"column '{twice[0]}' twice in the header"
                    )
                continue
            if len(row) != len(header):
                raise DataError(
                    written,
                    reader.line_num,
                    f"{len(row)} fields, but the header has {len(header)}",
                )
            _counted(pairs, written, reader.line_num)
            pairs.append((reader.line_num, dict(zip(header, row, strict=True))))
    except csv.Error as exc:
        raise DataError(written, reader.line_num, f"not CSV: {exc}") from None
    return pairs


def _txt(text: str, written: str) -> list[tuple[int, dict[str, Any]]]:
    pairs: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        _counted(pairs, written, number)
        pairs.append((number, {TEXT_FIELD: line}))
    return pairs


_PARSERS = {".jsonl": _jsonl, ".csv": _csv, ".txt": _txt}


def _as(value: Any, kind: str, written: str, line: int, field: str) -> Any:
    """VALUE as KIND (a CSV cell of digits is an integer label), or a DataError."""
    if kind == STRING and isinstance(value, str):
        return value
    if (
        kind == STRINGS
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) for v in value)
    ):
        return tuple(value)
    if kind == INDEX:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise DataError(written, line, f"field '{field}' is {shown}, expected {kind}")
