"""A spec given as a dict: anything that is not JSON-shaped is a SpecError at its JSON path,
and every problem of a dict spec is located by path alone, never by a line of a text the
user never wrote."""

from __future__ import annotations

import copy
import math
import re
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runner
from runner.errors import SpecError
from runner.spec.arguments import TextArguments
from runner.spec.types import Generate, Spec

BASE: dict[str, Any] = {
    "version": 1,
    "seed": 3,
    "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
    "adapters": {"a": {"path": "builtin:tiny-causal-lm-lora-a"}},
    "steps": [
        {"op": "load", "adapters": "a"},
        {"op": "generate", "prompt": ["the cat", "a dog"], "seed": 1, "max_new_tokens": 4},
    ],
}
LINE_NUMBER = re.compile(r"^<dict>[^:]*:\d")


def problems_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        runner.load_spec(spec)
    found = [str(p) for p in caught.value.problems]
    assert found and not any(LINE_NUMBER.match(p) for p in found), found
    assert all(p.line == 0 and p.file == "<dict>" for p in caught.value.problems)
    return found


def with_seed(value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec["steps"][1]["seed"] = value
    return spec


def test_a_valid_dict_loads() -> None:
    step = runner.load_spec(BASE).steps[1]
    assert isinstance(step, Generate) and step.seed == 1


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (np.int64(3), "numpy.int64 is not JSON data; write a plain int or float"),
        (np.float32(0.5), "numpy.float32 is not JSON data"),
        ({1, 2}, "a set is not JSON data; write a list"),
        (frozenset(), "a frozenset is not JSON data; write a list"),
        (b"1", "bytes is not JSON data; write a str"),
        (10**5000, "an integer of 16610 bits is past every bound of the spec"),
        (-(2**70), "an integer of 71 bits is past every bound of the spec"),
        (float("nan"), "NaN (not a number) is not a value a spec can hold"),
        (math.inf, "infinity is not a value a spec can hold"),
        (-math.inf, "infinity is not a value a spec can hold"),
        ("a\ud800", "holds a lone surrogate U+D800"),
        (object(), "object is not JSON data"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:12],
)
def test_values_json_cannot_hold_are_problems_at_their_path(value: Any, says: str) -> None:
    (problem,) = problems_of(with_seed(value))
    assert problem.startswith("<dict>: step 2 (generate): seed: " + says), problem


def test_non_string_keys_and_cycles_are_problems_at_their_path() -> None:
    spec = copy.deepcopy(BASE)
    spec["model"][(1, 2)] = "x"
    spec["adapters"][3] = {}
    spec["steps"][0]["self"] = spec["steps"][0]
    found = problems_of(spec)
    assert (
        "<dict>: model: has a key of type tuple; a spec holds mappings with string keys, "
        "lists, strings, numbers, booleans and null" in found
    )
    assert any(p.startswith("<dict>: adapters: has a key of type int") for p in found)
    assert (
        "<dict>: step 1 (load): self: holds itself (a circular reference); a spec is a tree of "
        "values" in found
    )


def test_schema_and_meaning_problems_of_a_dict_are_located_by_path() -> None:
    spec = copy.deepcopy(BASE)
    spec["steps"][1]["seed"] = 2**63  # past the schema's bound, within 64 bits
    spec["steps"][1]["max_new_tokens"] = "four"
    spec["steps"].append({"op": "set_adapters", "adapters": "nope"})
    found = problems_of(spec)
    assert (
        "<dict>: step 2 (generate): seed: must be <= 9223372036854775807, found 9223372036854775808"
        in found
    )
    assert any(p.startswith("<dict>: step 2 (generate): max_new_tokens: ") for p in found)
    assert any(
        p.startswith("<dict>: step 3 (set_adapters): adapters: adapter 'nope'") for p in found
    )


def test_floats_and_text_come_through_exactly() -> None:
    spec = copy.deepcopy(BASE)
    spec["steps"][1]["temperature"] = 1e-05  # json writes 1e-05, which YAML 1.1 reads as text
    spec["steps"][1]["do_sample"] = True
    spec["steps"][1]["prompt"] = ["a\x85b\u2028c\ufeffd\x7f", "😀 日本"]
    spec["steps"][1]["top_p"] = np.float64(0.5)  # a float subclass: fine
    loaded = runner.load_spec(spec)
    step = loaded.steps[1]
    assert isinstance(step, Generate)
    assert isinstance(step.args, TextArguments)
    assert step.args.temperature == 1e-05
    assert step.args.top_p == 0.5
    assert step.prompts == ("a\x85b\u2028c\ufeffd\x7f", "😀 日本")


def test_deep_and_huge_dicts_are_refused_quickly() -> None:
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    started = time.perf_counter()
    (problem,) = problems_of({**BASE, "description": deep})
    assert problem.startswith("<dict>: description") and "nested deeper than 64" in problem
    shared: list[Any] = ["x" * 1000]
    for _ in range(40):  # shared, not circular: 2**40 strings as JSON
        shared = [shared, shared]
    assert problems_of({**BASE, "description": shared}) == [
        "<dict>: $: the spec is larger than 1,048,576 bytes as JSON, the most it may hold"
    ]
    assert time.perf_counter() - started < 5


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**60, max_value=2**70),
    st.sampled_from([2**63, 2**64, -(2**64)]),
    st.sampled_from([400, 5000]).map(lambda digits: -(10**digits)),  # unprintable past 4,300
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["a\ud800", "\x00", "\x85", "\u2028", "\ufeff", "1e5", "NaN", ".nan"]),
    st.binary(max_size=4),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.bool_, st.booleans()),
    st.frozensets(st.integers(), max_size=2),
    st.builds(set, st.lists(st.integers(), max_size=2)),
    st.builds(tuple, st.lists(st.integers(), max_size=2)),
)
KEYS = st.one_of(
    st.sampled_from(["op", "seed", "prompt", "adapters", "path", "model", "steps", "a"]),
    st.text(max_size=5),
    st.integers(),
    st.tuples(st.integers()),
    st.none(),
)
NESTED = st.recursive(
    HOSTILE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
PLACES = st.sampled_from(
    [
        (),
        ("seed",),
        ("model",),
        ("model", "path"),
        ("adapters",),
        ("adapters", "a"),
        ("steps",),
        ("steps", 0),
        ("steps", 1),
        ("steps", 1, "seed"),
        ("steps", 1, "prompt"),
        ("steps", 1, "max_new_tokens"),
        ("defaults",),
    ]
)


def _put(spec: dict[str, Any], place: tuple[Any, ...], value: Any) -> dict[str, Any]:
    if not place:
        return value if isinstance(value, dict) else {**spec, "x": value}
    target: Any = spec
    for part in place[:-1]:
        target = target[part]
    target[place[-1]] = value
    return spec


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(place=PLACES, value=NESTED, cycle=st.booleans())
def test_any_hostile_structure_is_a_spec_or_a_spec_error(
    place: tuple[Any, ...], value: Any, cycle: bool
) -> None:
    spec = _put(copy.deepcopy(BASE), place, value)
    if cycle and isinstance(value, (dict, list)):
        value.append(spec) if isinstance(value, list) else value.update(loop=spec)
    try:
        result = runner.load_spec(spec)
    except SpecError as exc:
        assert exc.problems
        assert all(p.line == 0 and p.file == "<dict>" for p in exc.problems)
        assert not any(LINE_NUMBER.match(str(p)) for p in exc.problems)
    else:
        assert isinstance(result, Spec)
