"""`op: score` against lm-evaluation-harness itself: HFLM(pretrained=..., peft=...)'s
loglikelihood on the same (context, continuation) pairs, to 1e-4 in float32; and every
row of a mixed batch equal to that row scored alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runner
from runner import builtin

PAIRS = [
    ("The cat sat on the", " mat"),
    ("Once upon a ", "time"),  # the context's trailing space moves to the continuation
    ("", "A little bird sang"),  # an empty context: the prefix token
    ("A little bird", " sang a song, and then it flew far away over the hills"),
    ("x", "y"),
]


def _spec(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "pairs.jsonl").write_text(
        "".join(json.dumps({"c": c, "x": x}) + "\n" for c, x in PAIRS)
    )
    spec = tmp_path / "score.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\ndtype: float32\n"
        "model: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "  b: {path: builtin:tiny-causal-lm-lora-b}\n"
        "data:\n  p: {path: pairs.jsonl}\n"
        "steps:\n  - {op: load, adapters: [a, b]}\n"
        f"  - op: score\n    id: s\n    adapters: {rows}\n"
        "    context: {data: p, field: c}\n    continuation: {data: p, field: x}\n"
    )
    return spec


def _cells(run: runner.Run) -> list[dict]:
    (folder,) = (run.dir / "outputs").glob("*-s")
    return [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]


def test_loglikelihoods_equal_lm_eval_hflm_with_peft(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    run = runner.run(_spec(tmp_path, "[base, a, b]"), out=tmp_path / "runs")
    cells = _cells(run)
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i)
        for i, pair in enumerate(PAIRS)
    ]
    base = str(builtin.resolve("tiny-causal-lm"))
    for row in ("base", "a", "b"):
        peft = None if row == "base" else str(builtin.resolve(f"tiny-causal-lm-lora-{row}"))
        lm = HFLM(pretrained=base, peft=peft, device="cpu", dtype="float32", batch_size=2)
        expected = lm.loglikelihood(requests, disable_tqdm=True)
        got = [c for c in cells if c["row"] == row]
        assert [c["record"] for c in got] == list(range(len(PAIRS)))
        for cell, (loglik, greedy) in zip(got, expected, strict=True):
            assert cell["loglik"] == pytest.approx(loglik, abs=1e-4), (row, cell["record"])
            assert cell["is_greedy"] == greedy
        del lm
    # the rows differ: the test would notice a row scored by the wrong adapter
    by_row = {r: [c["loglik"] for c in cells if c["row"] == r] for r in ("base", "a", "b")}
    assert by_row["a"] != pytest.approx(by_row["b"], abs=1e-2)


def test_a_mixed_batch_row_equals_the_row_scored_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = "[base, a, b, {a: 0.5, b: 0.5}, {a: [0.3, 1.2]}]"
    mixed = runner.run(_spec(tmp_path, rows), out=tmp_path / "mixed")
    record = mixed.manifest.steps[1].execution
    assert record["batches"][0]["mixed"] and len(record["batches"][0]["rows"]) >= 4

    from runner.backends.transformers_backend import TransformersBackend

    monkeypatch.setattr(TransformersBackend, "mix", lambda self, weights: None)
    alone = runner.run(_spec(tmp_path, rows), out=tmp_path / "alone")
    assert not any(b["mixed"] for b in alone.manifest.steps[1].execution["batches"])
    a, b = _cells(mixed), _cells(alone)
    assert [(c["row"], c["record"]) for c in a] == [(c["row"], c["record"]) for c in b]
    for x, y in zip(a, b, strict=True):
        assert x["loglik"] == pytest.approx(y["loglik"], abs=1e-4)
        assert (x["tokens"], x["is_greedy"]) == (y["tokens"], y["is_greedy"])
    summary = {s.row: s for s in mixed.manifest.steps[1].scores or []}
    assert set(summary) == {"base", "a", "b", "a=0.5, b=0.5", "a=0.3", "a=1.2"}
    import math

    base = [c for c in a if c["row"] == "base"]
    total, tokens = sum(c["loglik"] for c in base), sum(c["tokens"] for c in base)
    assert summary["base"].perplexity == pytest.approx(math.exp(-total / tokens))
    assert summary["base"].loglik == pytest.approx(total / len(base))
