"""Read a YAML spec into plain data plus the line and column of every key and value.

Only PyYAML's safe constructors build values; `compose` keeps each node's mark, so
every later error can point at the exact place in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import Located, SpecError

Path_ = tuple[str | int, ...]
MAP, SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def format_path(path: Path_) -> str:
    """('steps', 2, 'adapters') -> 'steps[2].adapters'; the root is '$'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


@dataclass
class Document:
    """A parsed spec: its data, and where each value (and each mapping key) sits in the file."""

    file: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """The position of PATH's key or value; a path without a mark points at its parent."""
        marks = self.keys if key else self.values
        while path not in marks and path:
            path = path[:-1]
            marks = self.values
        return marks.get(path, (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Located:
        line, col = self.at(path, key=key)
        return Located(line, col, format_path(path), message, self.file)


def parse(text: str, file: str) -> Document:
    """Parse TEXT; a syntax error, an empty file or a duplicate key raises SpecError."""
    loader = yaml.SafeLoader(text)
    problems: list[Located] = []
    doc = Document(file, None)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(node, (), doc, loader, problems)
    except yaml.MarkedYAMLError as exc:
        # At the end of the file the problem is where the unfinished construct began.
        at_end = "end of stream" in (exc.problem or "")
        mark = (exc.context_mark if at_end else None) or exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        raise SpecError([Located(line, col, "$", message, file)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([Located(1, 1, "$", "the spec is empty", file)])
    if problems:
        raise SpecError(problems)
    return doc


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node,
    path: Path_,
    doc: Document,
    loader: yaml.SafeLoader,
    problems: list[Located],
    stack: frozenset[int] = frozenset(),
) -> Any:
    doc.values[path] = _mark(node)
    if id(node) in stack:  # an alias inside its own anchor: the value would never end
        line, col = _mark(node)
        problems.append(Located(line, col, format_path(path), "recursive alias", doc.file))
        return None
    stack |= {id(node)}
    if isinstance(node, yaml.CollectionNode) and node.tag not in (MAP, SEQ):
        # Collections are built here, not by PyYAML's constructors: refuse other tags ourselves.
        problems.append(_bad_tag(node, path, doc))
        return None
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            if key in out:
                first = doc.keys[child][0]
                line, col = _mark(key_node)
                message = f"duplicate key (first at line {first})"
                problems.append(Located(line, col, format_path(child), message, doc.file))
                continue
            doc.keys[child] = _mark(key_node)
            out[key] = _build(value_node, child, doc, loader, problems, stack)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), doc, loader, problems, stack)
            for i, item in enumerate(node.value)
        ]
    try:
        return loader.construct_object(node)
    except (yaml.constructor.ConstructorError, ValueError):  # e.g. !!python/..., `!!int abc`
        problems.append(_bad_tag(node, path, doc))
        return None


def _bad_tag(node: yaml.Node, path: Path_, doc: Document) -> Located:
    line, col = _mark(node)
    message = f"cannot read a value tagged {node.tag!r}: specs are plain, safe YAML"
    return Located(line, col, format_path(path), message, doc.file)
