"""The fast compare executors make exactly what the cell-by-cell definition makes.

Each spec holds a compare and then its cells written out as set_adapters (or disable) +
generate steps, the contract's definition of a cell; the two must agree token for token
(text, float32) or up to 1/255 (images, in test_compare). Rows cover base, one adapter at
two scales (which cannot share a batch), weighted mixes (merged for the step), prompts of
different lengths (left padding), on the builtin LM and on a tiny OPT made here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.running import compare

PROMPTS = ["The cat", "A little bird flew over the old house and", "x", "Once upon a time"]
ROWS: list[tuple[str, Any]] = [  # (label, the set_adapters value; None: disable)
    ("base", None),
    ("a", "a"),
    ("a=0.5", "{a: 0.5}"),
    ("a=0.5, b=0.8", "{a: 0.5, b: 0.8}"),
    ("a, b", "[a, b]"),
    ("b=0.3", "{b: 0.3}"),
    ("b=1", "{b: 1.0}"),
]


def spec_text(model: str, a: str, b: str) -> str:
    text = (
        "version: 1\nseed: 3\ndevice: cpu\n"
        f"model: {{family: transformers, path: {model}}}\n"
        f"adapters:\n  a: {{path: {a}}}\n  b: {{path: {b}}}\n"
        "defaults:\n  generate: {max_new_tokens: 10}\n"
        "steps:\n  - {op: load, adapters: [a, b]}\n"
        "  - {op: set_adapters, adapters: {b: 0.7}}\n"
        "  - op: compare\n    id: grid\n"
        "    adapters: [base, a, {a: 0.5}, {a: 0.5, b: 0.8}, [a, b], {b: [0.3, 1.0]}]\n"
        f"    prompt: {json.dumps(PROMPTS)}\n    seed: [0, 1]\n"
        "  - {op: generate, id: after, prompt: [The cat, x]}\n"
    )
    for r, (_, chosen) in enumerate(ROWS):
        if chosen is None:
            text += "  - op: disable\n"
        else:
            text += f"  - op: set_adapters\n    adapters: {chosen}\n  - op: enable\n"
        for p, prompt in enumerate(PROMPTS):
            text += f"  - {{op: generate, id: r{r}-p{p}, prompt: {json.dumps(prompt)}, seed: 0}}\n"
    text += "  - {op: set_adapters, adapters: {b: 0.7}}\n"
    text += "  - {op: generate, id: reference, prompt: [The cat, x]}\n"
    return text


def check(run: runner.Run) -> dict[str, Any]:
    """Every cell equals its generate step; returns the compare's execution record."""
    cells = run.cells("grid")
    assert len(cells) == len(ROWS) * len(PROMPTS) * 2
    n = 0
    for r, (label, _) in enumerate(ROWS):
        for p, prompt in enumerate(PROMPTS):
            (alone,) = run.outputs[f"r{r}-p{p}"]
            for seed in (0, 1):
                cell = cells[n]
                n += 1
                assert (cell.row, cell.prompt, cell.seed) == (label, prompt, seed)
                assert cell.token_ids == alone.token_ids, (label, prompt, seed)  # type: ignore[union-attr]
                assert cell.text == alone.text  # type: ignore[union-attr]
    distinct = {tuple(c.token_ids) for c in cells if c.prompt == PROMPTS[1]}  # type: ignore[arg-type]
    assert len(distinct) > 3  # the rows really differ
    # no trace of the merged adapters: the model runs {b: 0.7} as before the step
    after = [t.token_ids for t in run.outputs["after"]]  # type: ignore[union-attr]
    assert after == [t.token_ids for t in run.outputs["reference"]]  # type: ignore[union-attr]
    step = next(s for s in run.manifest.steps if s.id == "grid")
    assert step.active_adapters == {"b": 0.7}
    assert not any("__" in name for name in json.dumps(list(run.manifest.inputs.adapters)))
    return step.execution


def builtin_spec(folder: Path) -> Path:
    """The compare spec on the builtin LM and its two builtin LoRAs."""
    spec = folder / "spec.yaml"
    spec.write_text(
        spec_text(
            "builtin:tiny-causal-lm",
            "builtin:tiny-causal-lm-lora-a",
            "builtin:tiny-causal-lm-lora-b",
        )
    )
    return spec


def test_mixed_batches_equal_generate_steps_on_the_builtin_lm(tmp_path: Path) -> None:
    spec = builtin_spec(tmp_path)
    execution = check(runner.run(spec, out=tmp_path / "runs"))
    assert execution["executor"] == "mixed"
    batches = execution["batches"]
    # one adapter at two scales cannot share a batch; everything else can
    assert [b["rows"] for b in batches] == [
        ["base", "a", "a=0.5, b=0.8", "a, b", "b=0.3"],
        ["a=0.5", "b=1"],
    ]
    assert all(b["mixed"] for b in batches)
    assert execution["calls"] == 2 < len(ROWS) * len(PROMPTS)


def test_without_merging_weighted_rows_get_batches_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.backends import transformers_backend

    monkeypatch.setattr(transformers_backend, "MERGE_ROWS", False)
    spec = builtin_spec(tmp_path)
    execution = check(runner.run(spec, out=tmp_path / "runs"))
    alone = [b["rows"] for b in execution["batches"] if not b["mixed"]]
    assert alone == [["a=0.5, b=0.8"], ["a, b"]]


def test_mixed_batches_on_one_thread_equal_generate_steps_on_every_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU busier than its cores runs mixed calls on one torch thread: forced here, the
    cells still equal the steps token for token, and the threads are given back."""
    import torch

    from runner.backends import lora_mixing

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the generate steps on two threads, even on a test worker's one
    try:
        monkeypatch.setattr(lora_mixing, "SPARE", -1e9)  # always busy
        execution = check(runner.run(builtin_spec(tmp_path), out=tmp_path / "runs"))
        assert execution["executor"] == "mixed" and all(b["mixed"] for b in execution["batches"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_sampled_cells_run_one_by_one(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "steps:\n  - {op: load, adapters: [a]}\n"
        "  - {op: compare, id: s, adapters: [base, a], prompt: [x, y], seed: [0, 1],"
        " do_sample: true, max_new_tokens: 4}\n"
    )
    run = runner.run(spec, out=tmp_path / "runs")
    execution = run.manifest.steps[1].execution
    assert (execution["executor"], execution["calls"]) == ("one_by_one", 8)


def tiny_opt(folder: Path, b_targets: list[str]) -> tuple[Path, Path, Path]:
    """A random tiny OPT and two LoRAs of different ranks on different modules."""
    import torch
    from peft import LoraConfig, PeftModel
    from test_oracle_spec import tiny
    from transformers import AutoModelForCausalLM

    base = tiny("opt", folder / "opt")
    adapters = []
    for name, seed, r, targets in (
        ("a", 1, 4, ["q_proj", "v_proj"]),
        ("b", 2, 8, b_targets),
    ):
        torch.manual_seed(seed)
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=r,
            lora_alpha=2 * r,
            target_modules=targets,
            init_lora_weights=False,
        )
        PeftModel(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(folder / name)
        adapters.append(folder / name)
    return base, adapters[0], adapters[1]


def test_mixed_batches_equal_generate_steps_on_a_tiny_opt(tmp_path: Path) -> None:
    base, a, b = tiny_opt(tmp_path, ["v_proj", "out_proj"])
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(str(base), str(a), str(b)))
    execution = check(runner.run(spec, out=tmp_path / "runs"))
    assert execution["executor"] == "mixed" and execution["calls"] == 2


def test_a_model_that_refuses_mixing_runs_a_batch_per_row(tmp_path: Path) -> None:
    # OPT flattens (batch, sequence) before fc1: peft cannot tell the rows apart there
    base, a, b = tiny_opt(tmp_path, ["v_proj", "fc1"])
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(str(base), str(a), str(b)))
    execution = check(runner.run(spec, out=tmp_path / "runs"))
    assert "refused a mixed batch" in execution["why"]
    assert [b["rows"] for b in execution["batches"] if b["mixed"]] == []
    assert execution["calls"] == len(ROWS)


def test_cells_come_in_plan_order_whatever_order_they_are_made_in() -> None:
    from runner.spec.arguments import TextArguments
    from runner.spec.types import Compare, Row

    step = Compare(
        rows=(Row("base", None), Row("a", (("a", 1.0),))),
        prompts=("x", "y"),
        seeds=(1, 2),
        args=TextArguments(),
    )
    cells = compare.plan(step)
    seen: list[int] = []
    out = compare.InOrder(cells, lambda cell, made: seen.append(made[0]))
    for index in (3, 1, 0, 7, 2, 5, 4, 6):
        out.put(index, [index])
        assert seen == list(range(len(seen)))
    assert seen == list(range(8))


IMAGE_ROWS = [
    ("a", "a"),
    ("base", None),
    ("a=0.5", "{a: 0.5}"),
    ("a=0.5, b=0.5", "{a: 0.5, b: 0.5}"),
]


@pytest.mark.parametrize("lora_scale", [None, 0.7])
def test_image_rows_in_one_call_equal_generate_steps(
    tmp_path: Path, lora_scale: float | None
) -> None:
    """Several seeds, images per prompt and a negative prompt per prompt: the rows mixed in
    one call (UNet and text encoder LoRA layers each image's own, a two-adapter row merged),
    or with lora_scale, which the pipeline applies to every layer, one call per row; cell
    (prompt, seed)'s image k still comes from seed + k with its prompt's negative.

    Pixels within 1/255, the contract's bound: a cell's latents come from its own generator
    whatever its batch, so only the float32 rounding of batched products may differ."""
    import numpy as np
    from PIL import Image

    prompts, negatives, seeds = ["a red cube", "a blue ball"], ["blurry", "dark"], [5, 9]
    scale = "" if lora_scale is None else f", lora_scale: {lora_scale}"
    text = (
        "version: 1\ndevice: cpu\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n  b: {path: builtin:tiny-sd-lora-b}\n"
        f"defaults:\n  generate: {{num_inference_steps: 2, num_images_per_prompt: 2{scale}}}\n"
        "steps:\n  - {op: load, adapters: [a, b]}\n"
        f"  - op: compare\n    id: grid\n    adapters: [a, base, {{a: 0.5}}, {{a: 0.5, b: 0.5}}]\n"
        f"    prompt: {json.dumps(prompts)}\n    seed: {json.dumps(seeds)}\n"
        f"    negative_prompt: {json.dumps(negatives)}\n"
    )
    for r, (_, chosen) in enumerate(IMAGE_ROWS):
        text += (
            "  - op: disable\n"
            if chosen is None
            else f"  - {{op: set_adapters, adapters: {chosen}}}\n  - op: enable\n"
        )
        for p, (prompt, negative) in enumerate(zip(prompts, negatives, strict=True)):
            for seed in seeds:
                text += (
                    f"  - {{op: generate, id: r{r}-p{p}-s{seed}, prompt: {json.dumps(prompt)},"
                    f" seed: {seed}, negative_prompt: {negative}}}\n"
                )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    run = runner.run(spec, out=tmp_path / "runs")

    def pixels(file: Path | None) -> Any:
        assert file is not None
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB")).astype(int)

    cells = iter(run.cells("grid"))
    for r in range(len(IMAGE_ROWS)):
        for p in range(2):
            for seed in seeds:
                for k, alone in enumerate(run.outputs[f"r{r}-p{p}-s{seed}"]):
                    cell = next(cells)
                    assert (cell.prompt, cell.seed, alone.seed) == (prompts[p], seed + k, seed + k)
                    assert abs(pixels(cell.file) - pixels(alone.file)).max() <= 1, (r, p, seed, k)
    # the rows made differ: no row ran another's adapters
    firsts = [pixels(c.file) for c in run.cells("grid")[:: len(prompts) * len(seeds) * 2]]
    assert all(abs(x - y).max() > 2 for n, x in enumerate(firsts) for y in firsts[:n])
    execution = next(s for s in run.manifest.steps if s.id == "grid").execution
    assert execution["executor"] == "mixed"
    batches = [(b["rows"], b["mixed"], b["calls"]) for b in execution["batches"]]
    if lora_scale is None:
        # a at 1 cannot share a call with a at 0.5: two calls; the merged row joins the first
        assert batches == [(["a", "base", "a=0.5, b=0.5"], True, 1), (["a=0.5"], True, 1)]
        assert "why" not in execution
    else:  # base first, then the adapter rows in the order of their settings
        assert [rows for rows, *_ in batches] == [["base"], ["a=0.5"], ["a=0.5, b=0.5"], ["a"]]
        assert {(mixed, calls) for _, mixed, calls in batches} == {(False, 1)}
        assert "lora_scale" in execution["why"]


def test_a_mixed_step_leaves_no_trace_in_the_model() -> None:
    from runner import builtin
    from runner.backends import lora_mixing
    from runner.backends.transformers_backend import TransformersBackend
    from runner.spec.arguments import TextArguments
    from runner.spec.types import Adapter, Compare, Model, Row

    backend = TransformersBackend("cpu", "float32")
    backend.load_model(
        Model(family="transformers", path="builtin:tiny-causal-lm"),
        builtin.resolve("tiny-causal-lm"),
    )
    for name in ("a", "b"):
        path = f"builtin:tiny-causal-lm-lora-{name}"
        backend.load_adapter(
            Adapter(name=name, path=path), builtin.resolve(path.removeprefix(builtin.PREFIX))
        )
    rows = (
        Row("base", None),
        Row("a=0.5, b=0.5", (("a", 0.5), ("b", 0.5))),
        Row("b", (("b", 1.0),)),
    )
    step = Compare(
        rows=rows, prompts=("x", "the cat"), seeds=(0,), args=TextArguments(max_new_tokens=3)
    )
    made: list[Any] = []
    record = compare.mixed(backend, step, compare.plan(step), lambda c, r: made.append(r))
    assert len(made) == 6 and record["batches"][0]["mixed"]
    layers = lora_mixing.lora_layers(backend.model)
    assert layers and all(set(layer.lora_A) == {"a", "b"} for layer in layers)
    assert all("forward" not in vars(layer) for layer in layers)  # peft's forward again
    assert set(backend.model.peft_config) == {"a", "b"}
    assert (backend.merged, backend.layers) == ({}, None)


def test_dora_rows_run_a_batch_each_and_still_equal_generate_steps(tmp_path: Path) -> None:
    # peft will not mix DoRA: its rows fall back to set_adapters + one batch per row
    text = (
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "  d:\n    config: {type: lora, r: 4, lora_alpha: 8, init_lora_weights: false,"
        " use_dora: true, target_modules: [q_proj, v_proj]}\n"
        "defaults:\n  generate: {max_new_tokens: 6}\n"
        "steps:\n  - {op: load, adapters: [a, d]}\n"
        f"  - {{op: compare, id: grid, adapters: [base, d, a, {{d: 0.5}}], prompt: {json.dumps(PROMPTS[:2])}}}\n"
    )
    for r, chosen in enumerate([None, "d", "a", "{d: 0.5}"]):
        text += (
            "  - op: disable\n"
            if chosen is None
            else f"  - {{op: set_adapters, adapters: {chosen}}}\n  - op: enable\n"
        )
        text += f"  - {{op: generate, id: r{r}, prompt: {json.dumps(PROMPTS[:2])}}}\n"
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    run = runner.run(spec, out=tmp_path / "runs")
    cells = run.cells("grid")
    for r in range(4):
        alone = [t.token_ids for t in run.outputs[f"r{r}"]]  # type: ignore[union-attr]
        assert [c.token_ids for c in cells[2 * r : 2 * r + 2]] == alone, r
    execution = next(s for s in run.manifest.steps if s.id == "grid").execution
    assert [(b["rows"], b["mixed"]) for b in execution["batches"]] == [
        (["base", "a"], True),
        (["d"], False),
        (["d=0.5"], False),
    ]
