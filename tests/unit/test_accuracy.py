"""Text expectations taken from data (CONTRACT section 10) as a compare's `accuracy` per row:
validated against the data file, typed with where they came from, counted by hand here."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.running.expectations import Checked, accuracy, check
from runner.spec.load import load
from runner.spec.types import Compare

SPEC = """\
version: 1
model: {family: transformers, path: builtin:tiny-causal-lm}
data:
  qa: {path: qa.jsonl}
steps:
  - op: compare
    adapters: [base, a]
    prompt: {data: qa, field: question}
    expect:
"""
ADAPTER = "adapters:\n  a: {config: {type: lora, r: 4, target_modules: [q_proj]}}\n"
RECORDS = (
    '{"question": "q0", "answer": "cat", "pattern": "^the"}\n'
    '{"question": "q1", "answer": "dog", "pattern": "b+"}\n'
    '{"question": "q2", "answer": "owl", "pattern": "z$"}\n'
)


def _spec(tmp_path: Path, expect: str, records: str = RECORDS) -> Path:
    (tmp_path / "qa.jsonl").write_text(records)
    spec = tmp_path / "s.yaml"
    body = SPEC.replace("steps:\n", ADAPTER + "steps:\n  - {op: load, adapters: [a]}\n")
    spec.write_text(body + expect)
    return spec


def _problems(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(spec)
    return [str(p) for p in caught.value.problems]


def test_each_row_counts_the_cells_that_pass_every_data_expectation(tmp_path: Path) -> None:
    spec = load(
        _spec(
            tmp_path,
            "      contains: {data: qa, field: answer}\n"
            "      regex: {data: qa, field: pattern}\n"
            "      not_contains: xyz\n",  # a written value: checked, not counted
        )
    )
    (step,) = [s for s in spec.steps if isinstance(s, Compare)]
    assert step.prompts == ("q0", "q1", "q2")
    texts = {  # (row, prompt index) -> completion
        ("base", 0): "the cat sat",  # contains cat, matches ^the: right
        ("base", 1): "a dog barked",  # dog, but no b+? 'barked' has b: right
        ("base", 2): "an owl",  # owl, but not z$: wrong
        ("a", 0): "the dog",  # no cat: wrong
        ("a", 1): "bbb cat",  # no dog: wrong
        ("a", 2): "owl jazz xyz",  # owl, z$: right (xyz is a written value: not counted)
    }
    made = [
        Checked(row, i, step.prompts[i], 0, text, base=row == "base")
        for (row, i), text in texts.items()
    ]
    assert step.expect is not None
    rows = accuracy(step.expect, made, step.rows)
    assert [(r.row, r.records, r.accuracy) for r in rows] == [("base", 3, 2 / 3), ("a", 3, 1 / 3)]
    assert rows[0].adapters is None and rows[1].adapters == {"a": 1.0}
    results = {r.name: r for r in check(step.expect, made, None)}
    # the checks themselves look at the non-base row only, and record the reference as written
    assert results["contains"].failing_count == 2
    assert results["contains"].expected == {"data": "qa", "field": "answer"}
    assert results["not_contains"].failing_count == 1 and results["not_contains"].expected == "xyz"


def test_without_data_expectations_a_compare_has_no_accuracy(tmp_path: Path) -> None:
    spec = load(_spec(tmp_path, "      contains: cat\n"))
    (step,) = [s for s in spec.steps if isinstance(s, Compare)]
    assert step.expect is not None
    made = [Checked("base", 0, "q0", 0, "cat", base=True)]
    assert accuracy(step.expect, made, step.rows) == []


def test_a_missing_field_is_located_in_the_data_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "      equals: {data: qa, field: label}\n")
    (problem,) = _problems(spec)
    assert (
        problem == f"{tmp_path}/qa.jsonl:1:1: data.qa: no field 'label' (fields: answer, "
        "pattern, question)"
    )


def test_a_data_expectation_needs_one_record_per_prompt(tmp_path: Path) -> None:
    (tmp_path / "two.jsonl").write_text('{"answer": "x"}\n{"answer": "y"}\n')
    spec = _spec(tmp_path, "      contains: {data: two, field: answer}\n")
    spec.write_text(
        spec.read_text().replace(
            "  qa: {path: qa.jsonl}\n", "  qa: {path: qa.jsonl}\n  two: {path: two.jsonl}\n"
        )
    )
    (problem,) = _problems(spec)
    assert problem.endswith(
        "step 2 (compare): expect.contains: contains has 2 entries for 3 prompts; give one per prompt, "
        "or one string for all"
    )


def test_a_regex_from_data_must_compile(tmp_path: Path) -> None:
    records = RECORDS.replace('"z$"', '"(unclosed"')
    spec = _spec(tmp_path, "      regex: {data: qa, field: pattern}\n", records)
    (problem,) = _problems(spec)
    assert "step 2 (compare): expect.regex[2]: not a regular expression: missing )" in problem
