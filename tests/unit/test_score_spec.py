"""`op: score` in the spec: what validation refuses, and the typed step it builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands import spec_file

from runner.errors import SpecError
from runner.spec.load import load
from runner.spec.types import Score

HEAD = (
    "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
    "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
    "steps:\n  - {op: load, adapters: a}\n"
)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(spec_file(tmp_path, text, "s.yaml"))
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_a_diffusers_spec_cannot_score(tmp_path: Path) -> None:
    text = (
        "version: 1\nmodel: {family: diffusers, path: builtin:tiny-sd}\nsteps:\n"
        "  - {op: score, adapters: [base], context: a, continuation: b}\n"
    )
    assert _problems(tmp_path, text) == [
        "steps[0].op: op: score needs a causal LM: model.family transformers, not diffusers"
    ]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{op: score, adapters: [base], context: a}", "either continuation, or choices and label"),
        (
            "{op: score, adapters: [base], context: a, continuation: b, choices: [x], label: 0}",
            "either continuation, or choices and label",
        ),
        ("{op: score, adapters: [base], context: a, choices: [x, y]}", "choices and label"),
        (
            "{op: score, adapters: [base], context: [a, b, c], continuation: [x, y]}",
            "must be one value or one per record (context 3, continuation 2)",
        ),
        (
            "{op: score, adapters: [base], context: [a, b], choices: [x, y], label: [0, 2]}",
            "record 1: label 2 is not one of its 2 choices",
        ),
        (
            "{op: score, adapters: [base, nope], context: a, continuation: b}",
            "adapter 'nope' is not declared",
        ),
    ],
)
def test_a_score_step_that_means_nothing_is_refused(
    tmp_path: Path, step: str, message: str
) -> None:
    problems = _problems(tmp_path, HEAD + f"  - {step}\n")
    assert any(message in p for p in problems), problems


def test_values_are_one_per_record_and_a_single_one_is_for_all(tmp_path: Path) -> None:
    (tmp_path / "mc.jsonl").write_text(
        '{"q": "The cat", "o": [" sat", " flew"], "l": 1}\n{"q": "A bird", "o": [" sang"], "l": 0}\n'
    )
    spec = load(
        spec_file(
            tmp_path,
            HEAD.replace("steps:", "data:\n  mc: {path: mc.jsonl}\nsteps:")
            + "  - {op: score, id: s, adapters: [base, a, {a: [0.5, 1]}], context: ctx,"
            " continuation: [x, y]}\n"
            "  - {op: score, adapters: [a], context: {data: mc, field: q},"
            " choices: {data: mc, field: o}, label: {data: mc, field: l}}\n"
            "  - {op: score, adapters: [a], context: [p, q], choices: [y, n], label: 0}\n",
            "s.yaml",
        )
    )
    first, second, third = spec.steps[1:]
    assert isinstance(first, Score) and isinstance(second, Score) and isinstance(third, Score)
    assert [r.label for r in first.rows] == ["base", "a", "a=0.5", "a=1"]
    assert first.contexts == ("ctx", "ctx") and first.continuations == ("x", "y")
    assert second.contexts == ("The cat", "A bird")
    assert second.choices == ((" sat", " flew"), (" sang",)) and second.labels == (1, 0)
    assert third.choices == (("y", "n"), ("y", "n")) and third.labels == (0, 0)
