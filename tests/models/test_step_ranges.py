"""Step ranges (`{weight: W, steps: [start, stop]}`) against diffusers by hand: the same
pipeline call with a callback_on_step_end that calls set_adapters at the step boundaries
gives the same pixels, in a generate step, a compare row and after another call ended with
the adapter switched off."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

import runner
from runner import builtin
from runner.errors import StepError

PROMPT = "a photo of a cat"
DRAW = {"num_inference_steps": 4, "height": 32, "width": 32}


def draw(pipe: Any, seed: int, callback: Any = None) -> np.ndarray:
    generator = [torch.Generator("cpu").manual_seed(seed)]
    images = pipe(prompt=[PROMPT], generator=generator, callback_on_step_end=callback, **DRAW)
    return np.array(images.images[0]).astype(int)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> runner.Run:
    folder = tmp_path_factory.mktemp("ranges")
    spec = folder / "spec.yaml"
    spec.write_text(
        "version: 1\nseed: 4\ndevice: cpu\n"
        "model: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n"
        "defaults:\n  generate: {num_inference_steps: 4, height: 32, width: 32}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        "  - {op: set_adapters, id: early, adapters: {a: {weight: 0.8, steps: [0, 2]}}}\n"
        f"  - {{op: generate, id: first, prompt: {PROMPT}}}\n"
        f"  - {{op: generate, id: again, prompt: {PROMPT}}}\n"
        "  - op: compare\n    id: grid\n"
        "    adapters: [base, {a: {weight: [0.8, 1.0], steps: [2, 4]}}]\n"
        f"    prompt: {PROMPT}\n"
    )
    return runner.run(spec, out=folder / "runs")


@pytest.fixture(scope="module")
def hand() -> dict[str, np.ndarray]:
    pipe = DiffusionPipeline.from_pretrained(builtin.resolve("tiny-sd"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    found = builtin.resolve("tiny-sd-lora-a")
    file = found if found.is_file() else next(found.glob("*.safetensors"))
    pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name="a")

    def switch(weight: float, start: int, stop: int) -> Any:
        """A callback that runs adapter a at WEIGHT for steps START .. STOP - 1 only."""

        def callback(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            after = index + 1  # the step that runs next
            pipe.set_adapters(["a"], adapter_weights=[weight if start <= after < stop else 0.0])
            return tensors

        return callback

    out = {}
    pipe.set_adapters(["a"], adapter_weights=[0.8])
    out["early"] = draw(pipe, 4, switch(0.8, 0, 2))
    out["on"] = draw(pipe, 4)
    for weight in (0.8, 1.0):
        pipe.set_adapters(["a"], adapter_weights=[0.0])
        out[f"late={weight:g}"] = draw(pipe, 4, switch(weight, 2, 4))
    pipe.disable_lora()
    out["base"] = draw(pipe, 4)
    return out


def pixels(run: runner.Run, step: str) -> np.ndarray:
    (picture,) = run.outputs[step]
    return np.array(picture.image).astype(int)  # type: ignore[union-attr]


def test_a_step_range_is_set_adapters_in_a_callback(run: runner.Run, hand: dict[str, Any]) -> None:
    assert np.abs(pixels(run, "first") - hand["early"]).max() <= 1
    assert np.abs(hand["early"] - hand["on"]).mean() > 1  # the range did something
    assert np.abs(hand["early"] - hand["base"]).mean() > 1
    step = next(s for s in run.manifest.steps if s.id == "early")
    assert step.active_adapters == {"a": {"weight": 0.8, "steps": [0, 2]}}


def test_the_next_call_starts_with_the_adapter_on_again(run: runner.Run, hand: Any) -> None:
    assert np.abs(pixels(run, "again") - hand["early"]).max() <= 1


def test_compare_rows_sweep_the_weight_of_a_range(run: runner.Run, hand: dict[str, Any]) -> None:
    cells = run.cells("grid")
    assert [c.row for c in cells] == ["base", "a=0.8 steps=2:4", "a=1 steps=2:4"]
    assert cells[1].adapters == {"a": {"weight": 0.8, "steps": [2, 4]}}
    for cell, key in zip(cells, ["base", "late=0.8", "late=1"], strict=True):
        assert np.abs(np.array(cell.image).astype(int) - hand[key]).max() <= 1, key


def test_fuse_of_a_ranged_adapter_is_refused(tmp_path: Any) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        "  - {op: set_adapters, adapters: {a: {steps: [0, 2]}}}\n"
        "  - {op: fuse}\n"
    )
    with pytest.raises(StepError, match="fuse of 'a', which runs for a range of steps"):
        runner.run(spec, out=tmp_path / "runs")
