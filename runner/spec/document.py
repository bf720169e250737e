"""Read a YAML spec into plain data plus the line and column of every key and value.

libyaml's parser (PyYAML's C loader, where PyYAML has it; ten times faster, with the same
marks) turns the text into events, and runner.spec.composer builds the values from them,
within its limits. Here: a spec is at most 1 MiB (MAX_BYTES), UTF-8, and holds no raw
control character; each problem is located, in lines as YAML counts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import Located, SpecError
from runner.spec.composer import Composer, Mark, Path_, format_path

__all__ = ["Document", "Mark", "Path_", "format_path", "parse", "position", "read"]

# Bump when a document comes to read as other data: schema verdicts remembered by content
# (runner.spec.validcache) are keyed by it.
REVISION = 2
MAX_BYTES = 1024 * 1024

# What YAML counts as a line break (YAML 1.1, 5.4), so that lines count as the parser's do.
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# libyaml where PyYAML was built with it: about ten times faster, with the same marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What YAML may hold unescaped (YAML 1.1, 5.1): anything else must be written as an escape.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


@dataclass
class Document:
    """A parsed spec: its data, and where each value (and each mapping key) sits in the file."""

    file: str
    data: Any
    values: dict[Path_, Mark] = field(default_factory=dict)
    keys: dict[Path_, Mark] = field(default_factory=dict)

    def at(self, path: Path_, *, key: bool = False) -> Mark:
        """The position of PATH's key or value; a path without a mark points at its parent."""
        marks = self.keys if key else self.values
        while path not in marks and path:
            path = path[:-1]
            marks = self.values
        return marks.get(path, (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Located:
        line, col = self.at(path, key=key)
        return Located(line, col, format_path(path), message, self.file)


def read(raw: bytes, file: str) -> Document:
    """Parse a spec's bytes: too large, not UTF-8 or not YAML raises SpecError, located."""
    if len(raw) > MAX_BYTES:
        message = f"the spec is larger than {MAX_BYTES:,} bytes, the most a spec may hold"
        raise SpecError([Located(1, 1, "$", message, file)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        line, col = position(before, len(before))
        message = f"the spec is not UTF-8 text: byte 0x{raw[exc.start]:02x} ({exc.reason})"
        raise SpecError([Located(line, col, "$", message, file)]) from None
    return parse(text, file)


def position(text: str, index: int) -> Mark:
    """The line and column of TEXT[INDEX], counting line breaks as YAML does."""
    breaks = list(_BREAK.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


def parse(text: str, file: str) -> Document:
    """Parse TEXT; a syntax error, an empty file, a duplicate key or a limit raises SpecError."""
    bad = _UNPRINTABLE.search(text)
    if bad:
        line, col = position(text, bad.start())
        message = (
            f"character U+{ord(bad.group()):04X} cannot appear in YAML as it is; "
            "write it as an escape in a double-quoted string"
        )
        raise SpecError([Located(line, col, "$", message, file)])
    composer = Composer(file)
    loader = _Loader(text)
    try:
        empty = composer.build(loader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_error(exc, file, text)]) from None
    except yaml.YAMLError as exc:  # a reader error that the scan above did not foresee
        raise SpecError([Located(1, 1, "$", f"YAML error: {exc}", file)]) from None
    finally:
        loader.dispose()
    if empty or (composer.data is None and not composer.problems):
        # `---` alone (or `~`) holds no spec either; the two YAML parsers place its null apart
        raise SpecError([Located(1, 1, "$", "the spec is empty", file)])
    if composer.problems:
        raise SpecError(composer.problems)
    return Document(file, composer.data, composer.values, composer.keys)


def _syntax_error(exc: yaml.MarkedYAMLError, file: str, text: str) -> Located:
    # At the end of the file the problem is where the unfinished construct began.
    at_end = "end of stream" in (exc.problem or "")
    mark = (exc.context_mark if at_end else None) or exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    last = position(text, len(text))
    if line > last[0]:  # libyaml marks the end of a file without a final newline past it
        line, col = last
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.problem:
        message += f" ({exc.context})"
    return Located(line, col, "$", message, file)
