"""Build a spec's values from YAML parser events, recording the mark of every key and value.

Values are built here with an explicit stack, never by recursion, and only PyYAML's safe
scalar constructors make them. Building them here is what lets each limit hold while the
document is read, refused at its own line, in bounded time and memory:

MAX_DEPTH    collections nest at most 64 deep, aliases included
MAX_ALIASED  aliases and merge keys copy at most 100,000 keys and values in all, so nested
             aliases (a "billion laughs") are refused at the alias that crosses the bound
MAX_NUMBER   a number is at most 100 characters long (YAML 1.1 reads 1:2:3 as a base-60
             integer, which a long one would take quadratic time to compute)

Anchors may be redefined, as YAML allows; `<<` merge keys give way to keys written beside
them, and earlier merged mappings win over later ones, as in PyYAML.
"""

from __future__ import annotations

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

MAX_DEPTH = 64
MAX_ALIASED = 100_000
MAX_NUMBER = 100


def format_path(path: Path_) -> str:
    """('steps', 2, 'adapters') -> 'steps[2].adapters'; the root is '$'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


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


class Composer:
    """Builds a document's values from parser events, recording every mark on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.data: Any = None
        self.values: dict[Path_, Mark] = {}  # where each value is
        self.keys: dict[Path_, Mark] = {}  # where each mapping key is
        self.problems: list[Located] = []
        self.log: list[tuple[bool, Path_, Mark]] = []  # (is a key, path, mark), in order
        self.anchors: dict[str, _Built | None] = {}  # None while the anchored node is open
        self.stack: list[_Open] = []
        self.aliased = 0

    def build(self, loader: Any) -> bool:
        """Read the one document of LOADER's stream; True when the stream is empty."""
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
        if name in parent.value or (value is MERGE and child in self.keys):
            self.refuse(mark, child, f"duplicate key (first at line {self.keys[child][0]})")
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
            self.data = built.value
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
            if at[:cut] != built.root:  # an item's marks are among its list's
                continue
            if keys is None or (rel and rel[0] in keys):
                self.record(is_key, (*path, *rel), where)
        if keys is None:
            self.record(False, path, mark)  # the alias is where the value is used
        return _Built(built.value, path, start, len(self.log), built.depth)

    def merged(self, frame: _Open) -> dict[str, Any]:
        """`<<` merges: keys written in the mapping win, then earlier merged mappings."""
        merged: dict[str, Any] = {}
        where = self.keys[(*frame.path, "<<")]
        sources: list[_Built] = []
        for source in frame.sources:
            if isinstance(source.value, list):  # an alias to a list merges its items
                sources += [
                    _Built(item, (*source.root, i), source.start, source.end, source.depth)
                    for i, item in enumerate(source.value)
                ]
            else:
                sources.append(source)
        for source in sources:
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
        (self.keys if is_key else self.values)[path] = mark
        self.log.append((is_key, path, mark))

    def refuse(self, mark: Mark, path: Path_, message: str) -> None:
        self.problems.append(Located(*mark, format_path(path), message, self.file))

    def fail(self, mark: Mark, path: Path_, message: str) -> None:
        """A limit: stop reading at once, and report it with what was found before it."""
        self.refuse(mark, path, message)
        raise SpecError(self.problems)


def _is_merge(loader: Any, event: yaml.ScalarEvent) -> bool:
    """A plain `<<` key: YAML's merge key."""
    return bool(loader.resolve(yaml.ScalarNode, event.value, event.implicit) == MERGE)


def _bad_tag(tag: str | None) -> str:
    return f"cannot read a value tagged {tag!r}: specs are plain, safe YAML"
