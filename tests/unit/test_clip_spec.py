"""`metrics: [clip_score]` and `clip:` on a compare, validated before anything loads: each
mistake located at the field, and the typed step carries the metric and its model."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.spec.load import load
from runner.spec.types import Compare

IMAGE = "model: {family: diffusers, path: builtin:tiny-sd}\n"
TEXT = "model: {family: transformers, path: builtin:tiny-causal-lm}\n"


def _spec(tmp_path: Path, model: str, step: str) -> Path:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"version: 1\n{model}steps:\n  - op: compare\n    adapters: [base]\n"
        f"    prompt: a cat\n{step}"
    )
    return spec


def _problems(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(spec)
    return [str(p) for p in caught.value.problems]


def test_an_image_compare_takes_clip_score(tmp_path: Path) -> None:
    spec = load(
        _spec(tmp_path, IMAGE, "    metrics: [clip_score]\n    clip: {path: builtin:tiny-clip}\n")
    )
    (step,) = spec.steps
    assert isinstance(step, Compare)
    assert step.metrics == ("clip_score",) and step.clip == "builtin:tiny-clip"
    assert step.args.written() == {}  # metrics and clip never reach the pipeline


def test_clip_score_on_a_text_compare_is_refused_where_written(tmp_path: Path) -> None:
    spec = _spec(tmp_path, TEXT, "    metrics: [clip_score]\n    clip: {path: builtin:tiny-clip}\n")
    (problem,) = _problems(spec)
    assert problem == (
        f"{spec}:7:15: step 1 (compare): metrics[0]: clip_score scores images, but model.family is "
        "transformers; a text compare scores with text expectations taken from data "
        "(accuracy), or use op: score"
    )


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("    metrics: [clip_score]\n", "7:5: step 1 (compare): metrics: clip_score needs `clip:"),
        (
            "    clip: {path: builtin:tiny-clip}\n",
            "7:5: step 1 (compare): clip: `clip` names the model of clip_score, but the step's metrics",
        ),
        (
            "    metrics: [clip_score]\n    clip: {path: builtin:tiny-sd}\n",
            "8:18: step 1 (compare): clip.path: unknown builtin clip 'tiny-sd'; builtins: tiny-clip",
        ),
        (
            "    metrics: [clip_score]\n    clip: {path: ./no-such-clip}\n",
            "8:18: step 1 (compare): clip.path: local path './no-such-clip' does not exist",
        ),
        ("    metrics: [fid]\n", "7:15: step 1 (compare): metrics[0]:"),
    ],
)
def test_a_metric_without_its_model_or_a_model_without_its_metric(
    tmp_path: Path, step: str, expected: str
) -> None:
    spec = _spec(tmp_path, IMAGE, step)
    (problem,) = _problems(spec)
    assert problem.startswith(f"{spec}:{expected}"), problem
