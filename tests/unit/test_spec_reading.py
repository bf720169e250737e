"""Reading YAML: hostile documents are refused at their line, quickly, in bounded memory.

The golden files in examples/invalid/ hold the exact messages; these tests hold what golden
files cannot: time, memory, both parsers agreeing, and what a valid document reads as.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from runner.errors import SpecError
from runner.spec import composer, document
from runner.spec.composer import MAX_DEPTH
from runner.spec.document import MAX_BYTES, Document, parse, read
from runner.spec.load import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "examples" / "invalid").glob("*.yaml")
)
HEAD = "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(text, "s.yaml")
    return [str(p) for p in caught.value.problems]


def bounded(text: str, seconds: float = 10.0, megabytes: float = 64) -> list[str]:
    """The problems of TEXT, asserting they came within SECONDS and MEGABYTES of Python heap.

    The bound is loose (a shared machine, tracemalloc's own cost): the bugs it guards against
    took minutes or all memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = problems(text)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - started < seconds
    assert peak < megabytes * 2**20
    return found


def laughs(levels: int) -> str:
    lines = [HEAD.rstrip("\n"), 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 9, 30])
def test_nested_aliases_are_refused_at_the_alias_that_crosses_the_bound(levels: int) -> None:
    assert bounded(laughs(levels)) == [
        "s.yaml:8:10: x5[0]: aliases expand the document by more than 100,000 keys and values; "
        "write the values out or use fewer aliases"
    ]


def test_aliases_within_the_bound_still_read() -> None:
    doc = parse(laughs(4) + "steps: [{op: disable}]\n", "s.yaml")
    assert len(doc.data["x3"]) == 9 and doc.data["x3"][8][8][8][7] == "lol"
    assert doc.at(("x3", 8, 8, 8, 7)) == (3, 59)  # the anchored value's own place
    assert doc.at(("x3", 8)) == (6, 50)  # the alias, where the value is used


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_deep_nesting_is_refused_at_the_level_past_the_limit(opening: str, closing: str) -> None:
    (found,) = bounded(HEAD + "x:\n  " + opening * 500 + "0" + closing * 500 + "\n")
    assert found.endswith(f"nested deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_unclosed_deep_nesting_is_a_located_error_in_bounded_time(opening: str) -> None:
    (found,) = bounded(HEAD + "x: " + opening * 200_000 + "\n")
    assert found.startswith("s.yaml:3:")
    assert "nest" in found


def test_nesting_through_an_alias_counts_too() -> None:
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    (found,) = problems(HEAD + f"a: &a {deep}\nb: [[*a]]\n")
    assert found == (f"s.yaml:4:6: b[0][0]: nested deeper than {MAX_DEPTH} levels through an alias")


def test_a_spec_past_the_size_limit_is_refused_before_it_is_parsed() -> None:
    raw = (HEAD + "description: '" + "x" * MAX_BYTES + "'\n").encode()
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        read(raw, "s.yaml")
    assert time.perf_counter() - started < 2
    assert [str(p) for p in caught.value.problems] == [
        f"s.yaml:1:1: $: the spec is larger than {MAX_BYTES:,} bytes, the most a spec may hold"
    ]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_spec_that_never_ends_is_read_no_further_than_the_limit() -> None:
    started = time.perf_counter()
    with pytest.raises(SpecError, match="larger than"):
        load(Path("/dev/zero"))
    assert time.perf_counter() - started < 2


def test_a_spec_at_the_size_limit_validates_in_seconds(tmp_path: Path) -> None:
    step = (
        "  - op: generate\n    prompt: 'a prompt that is quite ordinary'\n    max_new_tokens: 3\n"
    )
    head = HEAD + "steps:\n"
    spec = tmp_path / "big.yaml"
    spec.write_text(head + step * ((MAX_BYTES - len(head)) // len(step)))
    started = time.perf_counter()
    assert len(load(spec).steps) > 10_000
    assert time.perf_counter() - started < 15  # about 3 s on one shared core


def test_a_long_number_is_refused_rather_than_computed() -> None:
    # YAML 1.1 reads 1:2:3 as a base-60 integer: a long one would take quadratic time.
    assert bounded(HEAD + "seed: " + "1:" * 400_000 + "1\n") == [
        "s.yaml:3:7: seed: a number may be at most 100 characters"
    ]


def test_an_alias_to_no_anchor_is_located() -> None:
    assert problems(HEAD + "steps:\n  - *nothing\n") == [
        "s.yaml:4:5: steps[0]: alias *nothing names no anchor before it"
    ]


def test_merge_keys_give_way_to_keys_written_beside_them() -> None:
    doc = parse(
        HEAD + "steps:\n"
        "  - &c {op: generate, prompt: hi, seed: 1}\n"  # line 4
        "  - {<<: *c, prompt: other}\n"
        "  - {seed: 4, <<: [*c, {seed: 3, id: x}]}\n"
        "  - <<: {op: disable}\n"
        "    id: y\n",
        "s.yaml",
    )
    assert doc.data["steps"][1:] == [
        {"op": "generate", "prompt": "other", "seed": 1},
        {"op": "generate", "prompt": "hi", "id": "x", "seed": 4},
        {"op": "disable", "id": "y"},
    ]
    assert doc.at(("steps", 1, "prompt")) == (5, 22)  # written here
    assert doc.at(("steps", 1, "op")) == (4, 13)  # merged from the anchor
    assert doc.at(("steps", 2, "id"), key=True) == (6, 34)


def test_a_merge_of_an_aliased_list_merges_its_mappings_as_pyyaml_does() -> None:
    text = HEAD + "a: &l [{x: 1, z: 0}, {y: 2, z: 9}]\nb: {<<: *l, y: 3}\n"
    doc = parse(text, "s.yaml")
    assert doc.data["b"] == yaml.safe_load(text)["b"] == {"x": 1, "z": 0, "y": 3}
    assert doc.at(("b", "x")) == (3, 12)


def test_a_second_merge_key_is_a_duplicate() -> None:
    assert problems(HEAD + "a: &a {x: 1}\nb: {<<: *a, <<: *a}\n") == [
        "s.yaml:4:13: b.<<: duplicate key (first at line 4)"
    ]


def test_a_merge_of_something_not_a_mapping_is_located() -> None:
    assert problems(HEAD + "a: &a [1]\nb:\n  <<: *a\n") == [
        "s.yaml:5:3: b: '<<' merges a mapping or a list of mappings"
    ]


def test_a_collection_as_key_is_refused() -> None:
    assert problems(HEAD + "? [a, b]\n: c\n") == [
        "s.yaml:3:3: $: a key must be a plain value, not a collection"
    ]


def test_a_second_document_is_refused() -> None:
    assert problems(HEAD + "---\nversion: 1\n") == [
        "s.yaml:3:1: $: YAML syntax error: but found another document "
        "(expected a single document in the stream)"
    ]


def _read_with(loader: type, path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(document, "_Loader", loader)
    try:
        doc: Document = read(path.read_bytes(), path.name)
        return doc.data, doc.values, doc.keys
    except SpecError as exc:
        return [str(p) for p in exc.problems]


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML without libyaml")
@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_the_c_and_python_parsers_read_alike(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _read_with(yaml.CSafeLoader, spec, monkeypatch)
    slow = _read_with(yaml.SafeLoader, spec, monkeypatch)
    assert fast == slow


def test_the_readme_states_the_limits_the_reader_applies() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"A spec is at most {MAX_BYTES // 2**20} MiB; lists and mappings nest at most "
        f"{MAX_DEPTH} deep; aliases and merge keys may copy at most {composer.MAX_ALIASED:,} "
        "keys and values in all"
    ) in readme
    assert f"a number is at most {composer.MAX_NUMBER} characters" in readme


def test_a_long_file_name_gives_a_name_a_folder_can_have(tmp_path: Path) -> None:
    spec = tmp_path / ("Long Name " * 24 + ".yaml")
    spec.write_text(HEAD + "steps: [{op: disable}]\n")
    name = load(spec).name
    assert name.startswith("long-name-long-name") and len(name) <= 100
