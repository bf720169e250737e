"""Fuzzing the spec reader and validator: whatever a file holds, the answer is a typed spec or
located errors (SpecError), never another exception, within a time and memory bound.

Inputs are random bytes, YAML-shaped text, documents built from the schema's own vocabulary
(valid ones, then mutated as data and as text), alias bombs and deep nesting. The example
budget is the hypothesis profile's: `fast` in `make test`, `HYPOTHESIS_PROFILE=long` for a
long run (see tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner import builtin
from runner.errors import SpecError
from runner.spec import composer, document, schema, vocabulary
from runner.spec.document import position, read
from runner.spec.load import load
from runner.spec.types import Spec, resolved

SECONDS = 5.0  # per input, on a busy machine; a real spec takes milliseconds
MEGABYTES = 64  # Python heap per input
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz")


def outcome(folder: Path, raw: bytes) -> Spec | SpecError:
    """load() of RAW as a spec file, asserting the property: a Spec, or located problems."""
    spec_file = folder / "spec.yaml"
    spec_file.write_bytes(raw)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result: Spec | SpecError = load(spec_file)
    except SpecError as exc:
        result = exc
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < SECONDS, f"{elapsed:.1f} s"
    assert peak < MEGABYTES * 2**20, f"{peak / 2**20:.0f} MB"
    if isinstance(result, SpecError):
        lines = position(raw.decode("utf-8", "replace"), len(raw))[0]
        assert result.problems
        for problem in result.problems:
            assert 1 <= problem.line <= lines and problem.col >= 1
            assert not RAW_CONTROL.search(str(problem)), str(problem)
    else:  # a valid spec is JSON as JSON means it
        json.dumps(resolved(result), allow_nan=False)
    return result


# The schema's own vocabulary: every key it names, every value it enumerates.


def _vocabulary(node: Any, keys: set[str], values: list[Any]) -> None:
    if isinstance(node, dict):
        keys.update(k for k in node.get("properties", {}) if isinstance(k, str))
        values.extend(node.get("enum", []))
        if "const" in node:
            values.append(node["const"])
        for sub in node.values():
            _vocabulary(sub, keys, values)
    elif isinstance(node, list):
        for sub in node:
            _vocabulary(sub, keys, values)


KEYS: set[str] = set()
VALUES: list[Any] = []
_vocabulary(schema.schema(), KEYS, VALUES)
NAMES = sorted(KEYS) + ["<<", "", "sead", "a b", "ä", "1", "base"]
BUILTINS = [builtin.PREFIX + name for name in sorted(builtin.catalog())]
SCALARS = st.one_of(
    st.sampled_from(VALUES + BUILTINS + ["./missing", "someone/lora", "a/b/c", "x\n", "~"]),
    st.integers(),
    st.integers(min_value=vocabulary.MAX_SEED - 3, max_value=2**64 + 3),
    st.floats(),  # NaN and infinities included
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=8),
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=20,
)


def _least(entry: dict[str, Any]) -> int:
    """The least whole value the schema ENTRY takes from 1 up."""
    step = entry.get("multipleOf", 1)
    return max(1, -(-entry.get("minimum", 1) // step) * step)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A spec that should validate: a builtin model, its adapters, steps in a sensible order."""
    family = draw(st.sampled_from(vocabulary.FAMILIES))
    models = [n for n, b in builtin.catalog().items() if b.kind == "model" and b.family == family]
    lora = [n for n, b in builtin.catalog().items() if b.kind == "adapter" and b.family == family]
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True), max_size=3))
    names = [n for n in dict.fromkeys(names) if n != "base"]
    adapters = {n: {"path": builtin.PREFIX + draw(st.sampled_from(lora))} for n in names}
    arguments = {
        name: draw(st.booleans()) if entry.get("type") == "boolean" else _least(entry)
        for name, (owner, entry) in vocabulary.ARGUMENTS.items()
        if owner == family and entry.get("type") in ("boolean", "integer", "number")
    }
    chosen = draw(st.lists(st.sampled_from(sorted(arguments)), max_size=3, unique=True))
    steps: list[dict[str, Any]] = []
    if names:
        steps.append({"op": "load", "adapters": names})
        steps.append({"op": "set_adapters", "adapters": {names[0]: draw(st.floats(-2, 2))}})
    prompt = draw(st.one_of(st.text(max_size=10), st.lists(st.text(max_size=5), min_size=1)))
    steps.append(
        {"op": "generate", "prompt": prompt, "seed": draw(st.integers(0, 2**32))}
        | {k: arguments[k] for k in chosen}
    )
    steps += draw(st.lists(st.sampled_from([{"op": "disable"}, {"op": "enable"}]), max_size=2))
    return {
        "version": 1,
        "name": draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True)),
        "model": {"family": family, "path": builtin.PREFIX + draw(st.sampled_from(models))},
        "adapters": adapters,
        "steps": steps,
    }


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        yield from _paths(value, (*at, key))


@st.composite
def mutated(draw: st.DrawFn, data: Any) -> Any:
    """DATA with a few subtrees replaced, keys dropped or random keys added."""
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(data))))
        if not path:
            data = draw(DATA)
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(DATA)
        elif action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(NAMES))] = draw(DATA)
    return data


def dump(data: Any, flow: bool, unicode: bool) -> bytes:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, allow_unicode=unicode)
    return text.encode("utf-8")


@st.composite
def text_mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """RAW with bytes inserted, deleted or repeated, as an editor's slip would leave it."""
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        piece = draw(
            st.sampled_from(
                [b"&a ", b"*a", b"<<: *a\n", b"- ", b"[", b"{", b":", b"\t", b"\n", b"'"]
            )
            | st.binary(max_size=4)
        )
        action = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if action == "insert":
            raw = raw[:at] + piece + raw[at:]
        elif action == "delete":
            raw = raw[:at] + raw[at + draw(st.integers(1, 10)) :]
        else:
            raw = raw[:at] + raw[at:][:40] * draw(st.integers(2, 5)) + raw[at + 40 :]
    return raw


FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(folder: Path, raw: bytes) -> None:
    outcome(folder, raw)


@FUZZ
@given(st.text(alphabet="-:[]{},&*!|>'\"#%@`? \n\tab01.~<\\", max_size=300))
def test_yaml_shaped_text(folder: Path, text: str) -> None:
    outcome(folder, text.encode("utf-8"))


@FUZZ
@given(valid_documents(), st.booleans(), st.booleans())
def test_valid_documents_validate(
    folder: Path, data: dict[str, Any], flow: bool, unicode: bool
) -> None:
    result = outcome(folder, dump(data, flow, unicode))
    assert isinstance(result, Spec), str(result)


@FUZZ
@given(st.data(), valid_documents(), st.booleans())
def test_mutated_documents(folder: Path, draw: st.DataObject, data: Any, flow: bool) -> None:
    outcome(folder, dump(draw.draw(mutated(data)), flow, unicode=True))


@FUZZ
@given(st.data(), valid_documents())
def test_documents_mutated_as_text(folder: Path, draw: st.DataObject, data: Any) -> None:
    outcome(folder, draw.draw(text_mutated(dump(data, flow=False, unicode=True))))


@settings(FUZZ, max_examples=max(20, settings.default.max_examples // 8))  # each one is big
@given(st.integers(1, 10), st.integers(1, 10))
def test_alias_bombs(folder: Path, levels: int, width: int) -> None:
    lines = ["version: 1", "x0: &x0 [lol]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * width)}]" for i in range(1, levels)]
    result = outcome(folder, "\n".join(lines).encode())
    assert isinstance(result, SpecError)
    if width**levels > 4 * composer.MAX_ALIASED:
        assert any("aliases expand" in p.message for p in result.problems)


@FUZZ
@given(st.lists(st.sampled_from(["[", "{a: ", "{? ", "- "]), min_size=1, max_size=300))
def test_deep_nesting(folder: Path, openings: list[str]) -> None:
    closing = {"[": "]", "{a: ": "}", "{? ": "}", "- ": ""}
    inline = "".join(openings) + "0" + "".join(closing[o] for o in reversed(openings))
    result = outcome(folder, f"version: 1\nx:\n  {inline}\n".encode())
    assert isinstance(result, SpecError)


@FUZZ
@given(st.text(alphabet="-:[]{},&*!|>'\" \n\tab01.<", max_size=200))
@example("---")  # the two parsers place an empty document's null apart: it is refused
def test_the_c_and_python_parsers_agree(text: str) -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml")

    def parsed(loader: type) -> Any:
        document._Loader = loader
        try:
            doc = read(text.encode(), "s.yaml")
            return doc.data, doc.values, doc.keys
        except SpecError:
            return SpecError
        finally:
            document._Loader = yaml.CSafeLoader

    fast, slow = parsed(yaml.CSafeLoader), parsed(yaml.SafeLoader)
    if fast is not SpecError and slow is not SpecError:
        assert fast == slow


def test_the_vocabulary_covers_the_schema() -> None:
    # So the generators above speak the language: a test of the fuzz tier itself.
    assert {"version", "model", "steps", "adapters", "prompt", "weight_name"} <= KEYS
    assert {"generate", "load", "transformers", "diffusers"} <= set(VALUES)
