"""A spec given as Python data (`runner.load_spec({...})`): checked to be JSON-shaped, then
written as the JSON text that the YAML reader takes, so a dict is checked as a file is.

Only what JSON holds passes: mappings with string keys, lists (or tuples), strings, finite
numbers, booleans and None. Anything else (numpy scalars, sets, bytes, non-string keys, a
mapping or list that holds itself, an integer of more than 64 bits, NaN or infinity, text
with a lone surrogate) is a problem at its JSON path. Nothing here can raise on hostile
data: the walk stops at MAX_DEPTH levels and at MAX_BYTES bytes of JSON, as a file would.

A dict has no lines: its problems are located by JSON path alone,
`<dict>: step 1 (generate): seed: ...` (line 0, which `Located` prints without a position).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from runner.errors import Located
from runner.spec.composer import MAX_DEPTH, Path_, format_path
from runner.spec.document import MAX_BYTES
from runner.spec.vocabulary import MAX_SEED

FILE = "<dict>"
# The widest integer any field of the vocabulary takes is a seed (< 2**63); a few bits more still
# reach the schema, which names the bound. Past this, an integer is refused here, before its
# digits are ever written (Python refuses to print an int of more than 4,300 digits).
MAX_INT_BITS = 64
# What the YAML reader cannot take raw inside a double-quoted string, or would read as a
# line break and fold into a space: written as \u escapes, which YAML reads back exactly.
_ESCAPED = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
    "\U00010000-\U0010ffff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_KINDS = "a spec holds mappings with string keys, lists, strings, numbers, booleans and null"


def problems(data: Any) -> list[Located]:
    """What in DATA is not JSON-shaped, each at its JSON path; [] when all of it is."""
    walk = _Walk()
    walk.value(data, ())
    return walk.problems


def as_text(data: Any) -> str:
    """DATA (which passed `problems`) as JSON text that the YAML reader reads back exactly.

    Written here rather than by json.dumps: YAML 1.1 reads `1e-05` (json's float) as a
    string, so a float always has a `.`; text YAML cannot hold raw is escaped.
    """
    if isinstance(data, dict):
        items = (f"{_string(k)}: {as_text(v)}" for k, v in data.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(data, (list, tuple)):
        return "[" + ", ".join(map(as_text, data)) + "]"
    if isinstance(data, str):
        return _string(data)
    if data is None or isinstance(data, bool):
        return json.dumps(data)
    if isinstance(data, int):
        return int.__repr__(data)
    number = float.__repr__(data)  # a numpy float64 is a float whose repr is not a number
    mantissa, e, exponent = number.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else number


def _string(text: str) -> str:
    return _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def unplaced(problem: Located) -> Located:
    """PROBLEM as a dict spec's: its JSON path, no line or column."""
    return dataclasses.replace(problem, line=0, col=0, file=FILE)


class _Walk:
    def __init__(self) -> None:
        self.problems: list[Located] = []
        self.size = 0  # bytes of JSON text at least, so far
        self.open: set[int] = set()  # ids of the containers being walked (a cycle meets one)

    def fail(self, path: Path_, message: str) -> None:
        self.problems.append(Located(0, 0, format_path(path), message, FILE))

    def value(self, value: Any, path: Path_) -> None:
        if self.size > MAX_BYTES:
            return
        self.size += 2
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                self.fail(
                    path,
                    f"an integer of {value.bit_length()} bits is past every bound "
                    f"of the spec (at most {MAX_SEED})",
                )
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                what = "NaN (not a number)" if math.isnan(value) else "infinity"
                self.fail(path, f"{what} is not a value a spec can hold; write a finite number")
            return
        if isinstance(value, str):
            self.text(value, path)
            return
        if isinstance(value, (dict, list, tuple)):
            self.container(value, path)
            return
        self.fail(path, _not_json(value))

    def text(self, value: str, path: Path_) -> None:
        self.size += len(value)
        lone = _SURROGATE.search(value)
        if lone:
            self.fail(
                path,
                f"holds a lone surrogate U+{ord(lone.group()):04X}, which is not "
                "text; a spec's strings are Unicode text",
            )

    def container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], path: Path_) -> None:
        if id(value) in self.open:
            self.fail(path, "holds itself (a circular reference); a spec is a tree of values")
            return
        if len(path) >= MAX_DEPTH:
            self.fail(path, f"nested deeper than {MAX_DEPTH} levels")
            return
        self.open.add(id(value))
        try:
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        self.fail(path, f"has a key of type {_type(key)}; {_KINDS}")
                        continue
                    self.text(key, path)
                    self.value(item, (*path, key))
            else:
                for index, item in enumerate(value):
                    self.value(item, (*path, index))
        finally:
            self.open.discard(id(value))
        if self.size > MAX_BYTES and not path:
            message = f"the spec is larger than {MAX_BYTES:,} bytes as JSON, the most it may hold"
            self.problems = [Located(0, 0, "$", message, FILE)]


def _type(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _not_json(value: Any) -> str:
    kind = _type(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{kind} is not JSON data; write a str"
    if isinstance(value, (set, frozenset)):
        return f"a {kind} is not JSON data; write a list"
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy (or torch) scalar
        return f"{kind} is not JSON data; write a plain int or float (value.item())"
    return f"{kind} is not JSON data; {_KINDS}"
