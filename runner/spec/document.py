"""Read a YAML spec into plain data plus the line and column of every key and value.

libyaml's parser (PyYAML's C loader, where PyYAML has it) turns the text into events that
carry their marks. Values are built here from those events with an explicit stack, never by
recursion, and only PyYAML's safe scalar constructors make them. Building them here is what
lets each limit hold while the document is read, refused at its own line, in bounded time
and memory:

MAX_BYTES    a spec is at most 1 MiB (validating one that large takes a few seconds)
MAX_DEPTH    collections nest at most 64 deep, aliases included
MAX_ALIASED  aliases and merge keys copy at most 100,000 keys and values in all, so nested
             aliases (a "billion laughs") are refused at the alias that crosses the bound
MAX_NUMBER   a number is at most 100 characters long
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import Located, SpecError

Path_ = tuple[str | int, ...]
Mark = tuple[int, int]
MAP, SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MERGE, INT, FLOAT = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
STR = "tag:yaml.org,2002:str"
SCALARS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "binary")
) | {"tag:yaml.org,2002:timestamp"}

# Bump when a document comes to read as other data: schema verdicts remembered by content
# (runner.spec.validcache) are keyed by it.
REVISION = 2
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASED = 100_000
MAX_NUMBER = 100

# What YAML counts as a line break (YAML 1.1, 5.4), so that lines count as the parser's do.
_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# libyaml where PyYAML was built with it: about ten times faster, with the same marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What YAML may hold unescaped (YAML 1.1, 5.1): anything else must be written as an escape.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


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
    builder = _Builder(Document(file, None))
    loader = _Loader(text)
    try:
        empty = builder.build(loader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_error(exc, file, text)]) from None
    except yaml.YAMLError as exc:  # a reader error that the scan above did not foresee
        raise SpecError([Located(1, 1, "$", f"YAML error: {exc}", file)]) from None
    finally:
        loader.dispose()
    if empty:
        raise SpecError([Located(1, 1, "$", "the spec is empty", file)])
    if builder.problems:
        raise SpecError(builder.problems)
    return builder.doc


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


def _mark(event: yaml.Event) -> Mark:
    return event.start_mark.line + 1, event.start_mark.column + 1


_PENDING = object()  # a mapping waits for its next key
_DROP = object()  # the next value belongs to a key that was refused


@dataclass
class _Built:
    """A finished value, and where its marks are: log[start:end], under path `root`."""

    value: Any
    root: Path_
    start: int
    end: int
    depth: int  # collections nested in it, itself included
    items: list[_Built] = field(default_factory=list)  # a merge list's mappings


@dataclass
class _Open:
    """A collection being read."""

    path: Path_
    value: Any  # dict or list
    anchor: str | None
    start: int
    key: Any = _PENDING
    merge: bool = False  # a list that is the value of `<<`: its items are merged
    sources: list[_Built] = field(default_factory=list)  # what `<<` merges (or a merge list)
    below: int = 0  # the depth of its deepest child


class _Builder:
    """Builds the document's values from parser events, recording every mark on the way."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Located] = []
        self.log: list[tuple[bool, Path_, Mark]] = []  # (is a key, path, mark), in order
        self.anchors: dict[str, _Built | None] = {}  # None while the anchored node is open
        self.stack: list[_Open] = []
        self.aliased = 0

    def build(self, loader: Any) -> bool:
        """Read the one document of the stream into self.doc; True when the stream is empty."""
        loader.get_event()  # StreamStartEvent
        if loader.check_event(yaml.StreamEndEvent):
            return True
        first = loader.get_event()  # DocumentStartEvent
        while not loader.check_event(yaml.DocumentEndEvent):
            self.event(loader, loader.get_event())
        loader.get_event()
        if not loader.check_event(yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                first.start_mark,
                "but found another document",
                loader.get_event().start_mark,
            )
        return False

    def event(self, loader: Any, event: yaml.Event) -> None:
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self.close()
            return
        parent = self.stack[-1] if self.stack else None
        if parent is not None and isinstance(parent.value, dict) and parent.key is _PENDING:
            self.key(loader, parent, event)
        elif isinstance(event, yaml.ScalarEvent):
            path = self.child(parent)
            value = self.scalar(loader, event, path)
            self.record(False, path, _mark(event))
            self.done(_Built(value, path, len(self.log) - 1, len(self.log), 0), event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event, self.child(parent), parent)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.open(event, self.child(parent), parent)

    def child(self, parent: _Open | None) -> Path_:
        """The path of the next value inside PARENT."""
        if parent is None:
            return ()
        if isinstance(parent.value, list):
            return (*parent.path, len(parent.value))
        return (*parent.path, parent.key if isinstance(parent.key, str) else "<<")

    def key(self, loader: Any, parent: _Open, event: yaml.Event) -> None:
        mark = _mark(event)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.refuse(mark, parent.path, "a key must be a plain value, not a collection")
            parent.key = _DROP  # its value is read, then dropped
            self.open(event, (*parent.path, "<<"), parent)
            return
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            value = anchored.value if anchored is not None else None
            if isinstance(value, (dict, list)):
                self.refuse(mark, parent.path, "a key must be a plain value, not a collection")
        elif event.tag is None and _is_merge(loader, event):
            value = MERGE
        else:
            value = self.scalar(loader, event, parent.path)
        name = "<<" if value is MERGE else value if isinstance(value, str) else str(value)
        child = (*parent.path, name)
        if name in parent.value or (value is MERGE and child in self.doc.keys):
            self.refuse(mark, child, f"duplicate key (first at line {self.doc.keys[child][0]})")
            parent.key = _DROP
            return
        self.record(True, child, mark)
        parent.key = MERGE if value is MERGE else name

    def open(self, event: Any, path: Path_, parent: _Open | None) -> None:
        mark = _mark(event)
        if len(self.stack) >= MAX_DEPTH:
            self.fail(mark, path, f"nested deeper than {MAX_DEPTH} levels")
        is_map = isinstance(event, yaml.MappingStartEvent)
        if event.tag not in (None, "!", MAP if is_map else SEQ):
            # Collections are built here, not by PyYAML's constructors: refuse other tags here.
            self.refuse(mark, path, _bad_tag(event.tag))
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        self.record(False, path, mark)
        merge = parent is not None and not is_map and parent.key is MERGE
        value: Any = {} if is_map else []
        self.stack.append(_Open(path, value, event.anchor, len(self.log) - 1, merge=merge))

    def close(self) -> None:
        frame = self.stack.pop()
        if isinstance(frame.value, dict) and frame.sources:
            frame.value = self.merged(frame)
        built = _Built(frame.value, frame.path, frame.start, len(self.log), 1 + frame.below)
        if frame.merge:
            built.items = frame.sources
        self.done(built, frame.anchor)

    def done(self, built: _Built, anchor: str | None) -> None:
        """Hand a finished value to its parent (or make it the document), naming its anchor."""
        if anchor is not None:
            self.anchors[anchor] = built
        if not self.stack:
            self.doc.data = built.value
            return
        parent = self.stack[-1]
        parent.below = max(parent.below, built.depth)
        if isinstance(parent.value, list):
            if parent.merge:
                parent.sources.append(built)
            parent.value.append(built.value)
            return
        key, parent.key = parent.key, _PENDING
        if key is MERGE:
            parent.sources += built.items or [built]
        elif key is not _DROP:
            parent.value[key] = built.value

    def alias(self, event: yaml.AliasEvent, path: Path_, parent: _Open | None) -> None:
        mark = _mark(event)
        anchored = self.anchors.get(event.anchor)
        if anchored is None:
            if event.anchor in self.anchors:  # inside its own anchor: it would never end
                self.refuse(mark, path, "recursive alias")
            else:
                self.refuse(mark, path, f"alias *{event.anchor} names no anchor before it")
            self.record(False, path, mark)
            self.done(_Built(None, path, len(self.log) - 1, len(self.log), 0), None)
        elif parent is not None and (parent.merge or parent.key is MERGE):
            self.done(anchored, None)  # merged keys are copied once, when the mapping closes
        else:
            self.done(self.graft(anchored, path, mark), None)

    def graft(self, built: _Built, path: Path_, mark: Mark, keys: set[Any] | None = None) -> _Built:
        """Copy BUILT's marks under PATH (only those of KEYS, for a merge): an alias's cost."""
        if len(self.stack) + built.depth > MAX_DEPTH:
            self.fail(mark, path, f"nested deeper than {MAX_DEPTH} levels through an alias")
        self.aliased += built.end - built.start
        if self.aliased > MAX_ALIASED:
            self.fail(
                mark,
                path,
                f"aliases expand the document by more than {MAX_ALIASED:,} keys and values; "
                "write the values out or use fewer aliases",
            )
        start, cut = len(self.log), len(built.root)
        for is_key, at, where in self.log[built.start : built.end]:
            rel = at[cut:]
            if keys is None or (rel and rel[0] in keys):
                self.record(is_key, (*path, *rel), where)
        if keys is None:
            self.record(False, path, mark)  # the alias is where the value is used
        return _Built(built.value, path, start, len(self.log), built.depth)

    def merged(self, frame: _Open) -> dict[str, Any]:
        """`<<` merges: keys written in the mapping win, then earlier merged mappings."""
        merged: dict[str, Any] = {}
        where = self.doc.keys[(*frame.path, "<<")]
        for source in frame.sources:
            if not isinstance(source.value, dict):
                self.refuse(where, frame.path, "'<<' merges a mapping or a list of mappings")
                continue
            new = {k for k in source.value if k not in frame.value and k not in merged}
            merged.update((k, v) for k, v in source.value.items() if k in new)
            self.graft(source, frame.path, where, keys=new)
        return {**merged, **frame.value}

    def scalar(self, loader: Any, event: yaml.ScalarEvent, path: Path_) -> Any:
        tag = event.tag
        if tag == "!":  # YAML's non-specific tag: a string (libyaml agrees; PyYAML's parser not)
            tag = STR
        elif tag is None:
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in (INT, FLOAT) and len(event.value) > MAX_NUMBER:
            self.refuse(_mark(event), path, f"a number may be at most {MAX_NUMBER} characters")
            return None
        if tag not in SCALARS:
            self.refuse(_mark(event), path, _bad_tag(tag))
            return None
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return loader.yaml_constructors[tag](loader, node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
            self.refuse(_mark(event), path, _bad_tag(tag))  # e.g. `!!int abc`
            return None

    def record(self, is_key: bool, path: Path_, mark: Mark) -> None:
        (self.doc.keys if is_key else self.doc.values)[path] = mark
        self.log.append((is_key, path, mark))

    def refuse(self, mark: Mark, path: Path_, message: str) -> None:
        self.problems.append(Located(*mark, format_path(path), message, self.doc.file))

    def fail(self, mark: Mark, path: Path_, message: str) -> None:
        """A limit: stop reading at once, and report it with what was found before it."""
        self.refuse(mark, path, message)
        raise SpecError(self.problems)


def _is_merge(loader: Any, event: yaml.ScalarEvent) -> bool:
    """A plain `<<` key: YAML's merge key."""
    return bool(loader.resolve(yaml.ScalarNode, event.value, event.implicit) == MERGE)


def _bad_tag(tag: str | None) -> str:
    return f"cannot read a value tagged {tag!r}: specs are plain, safe YAML"
