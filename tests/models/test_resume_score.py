"""`--resume` takes a finished score step (and a compare's accuracy) from the old run: the
model is not asked again, the files and summaries are the old run's byte for byte, and the
resumed run verifies and equals the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_resume import files, stopped_run

import runner
from runner.backends.transformers_backend import TransformersBackend

SPEC = """\
version: 1
name: scored
device: cpu
seed: 1
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
data:
  qa: {path: qa.jsonl}
defaults:
  generate: {max_new_tokens: 4}
steps:
  - {op: load, adapters: [a]}
  - op: score
    id: loglik
    adapters: [base, a]
    context: {data: qa, field: question}
    continuation: {data: qa, field: answer}
  - op: compare
    id: qa
    adapters: [base, a]
    prompt: {data: qa, field: question}
    expect: {contains: {data: qa, field: answer}}
  - {op: generate, id: last, prompt: the end}
"""


def test_a_resumed_run_takes_finished_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "qa.jsonl").write_text(
        '{"question": "the cat", "answer": " sat"}\n{"question": "a dog", "answer": " ran"}\n'
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    full = runner.run(spec, out=tmp_path / "full")
    stopped = stopped_run(spec, tmp_path / "runs", after=3)
    old = {s.id: s for s in runner.open_run(stopped).manifest.steps}
    assert old["loglik"].scores and old["qa"].scores

    calls: list[int] = []
    scoring = TransformersBackend.loglikelihoods

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return scoring(self, *args, **kwargs)

    monkeypatch.setattr(TransformersBackend, "loglikelihoods", counted)
    resumed = runner.resume(stopped)
    assert calls == []  # the score step was not computed again
    steps = {s.id: s for s in resumed.manifest.steps}
    assert steps["loglik"].execution["outputs_from"] == str(stopped)
    assert steps["qa"].execution["outputs_from"] == str(stopped)
    assert "outputs_from" not in steps["last"].execution
    for name in ("loglik", "qa"):
        assert steps[name].scores == old[name].scores
    before = (stopped / "outputs/02-loglik/scores.jsonl").read_bytes()
    assert (resumed.dir / "outputs/02-loglik/scores.jsonl").read_bytes() == before
    assert files(resumed.dir) == files(full.dir)
    assert resumed.scores("qa") == full.scores("qa")
    assert resumed.scores("loglik") == full.scores("loglik")
    assert runner.verify(resumed).ok
