"""Weights per component and per UNet block against diffusers' own set_adapters by hand, on
the tiny SDXL builtin: the same images within 1/255, set_adapters steps and compare rows."""

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
DRAW = {"num_inference_steps": 2, "height": 32, "width": 32}
BLOCKS = "{unet: {down: {block_1: [0.9, 0.5]}, mid: 0.7, up: {block_0: [0.4, 0.8, 1.0]}}}"
BLOCKS_BY_HAND = {
    "unet": {"down": {"block_1": [0.9, 0.5]}, "mid": 0.7, "up": {"block_0": [0.4, 0.8, 1.0]}}
}


def draw(pipe: Any, seed: int) -> np.ndarray:
    generator = [torch.Generator("cpu").manual_seed(seed)]
    return np.array(pipe(prompt=[PROMPT], generator=generator, **DRAW).images[0]).astype(int)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> runner.Run:
    folder = tmp_path_factory.mktemp("components")
    spec = folder / "spec.yaml"
    spec.write_text(
        "version: 1\nseed: 4\ndevice: cpu\n"
        "model: {family: diffusers, path: builtin:tiny-sdxl}\n"
        "adapters:\n  a: {path: builtin:tiny-sdxl-lora-a}\n"
        "defaults:\n  generate: {num_inference_steps: 2, height: 32, width: 32}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        "  - {op: set_adapters, id: parts, adapters: {a: {unet: 0.8, text_encoder: 0.3, "
        "text_encoder_2: 0.3}}}\n"
        f"  - {{op: generate, id: components, prompt: {PROMPT}}}\n"
        f"  - {{op: set_adapters, adapters: {{a: {BLOCKS}}}}}\n"
        f"  - {{op: generate, id: blocks, prompt: {PROMPT}}}\n"
        "  - op: compare\n    id: grid\n"
        "    adapters: [base, {a: {unet: [0.5, 1.0], text_encoder: 0.3}}]\n"
        f"    prompt: {PROMPT}\n"
    )
    return runner.run(spec, out=folder / "runs")


@pytest.fixture(scope="module")
def hand() -> dict[str, np.ndarray]:
    pipe = DiffusionPipeline.from_pretrained(builtin.resolve("tiny-sdxl"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out = {"plain": draw(pipe, 4)}
    found = builtin.resolve("tiny-sdxl-lora-a")
    file = found if found.is_file() else next(found.glob("*.safetensors"))
    pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name="a")
    weights: dict[str, Any] = {"unet": 0.8, "text_encoder": 0.3, "text_encoder_2": 0.3}
    pipe.set_adapters(["a"], adapter_weights=[weights])
    out["components"] = draw(pipe, 4)
    pipe.set_adapters(["a"], adapter_weights=[BLOCKS_BY_HAND])
    out["blocks"] = draw(pipe, 4)
    for unet in (0.5, 1.0):
        pipe.set_adapters(["a"], adapter_weights=[{"unet": unet, "text_encoder": 0.3}])
        out[f"unet={unet:g}"] = draw(pipe, 4)
    pipe.set_adapters(["a"])
    out["one"] = draw(pipe, 4)
    return out


def pixels(run: runner.Run, step: str) -> np.ndarray:
    (picture,) = run.outputs[step]
    return np.array(picture.image).astype(int)  # type: ignore[union-attr]


def test_per_component_weights_are_diffusers_own(run: runner.Run, hand: dict[str, Any]) -> None:
    assert np.abs(pixels(run, "components") - hand["components"]).max() <= 1
    assert np.abs(hand["components"] - hand["one"]).mean() > 1  # the weights did something
    step = next(s for s in run.manifest.steps if s.id == "parts")
    assert step.active_adapters == {"a": {"unet": 0.8, "text_encoder": 0.3, "text_encoder_2": 0.3}}


def test_per_block_weights_are_diffusers_own(run: runner.Run, hand: dict[str, Any]) -> None:
    assert np.abs(pixels(run, "blocks") - hand["blocks"]).max() <= 1
    assert np.abs(hand["blocks"] - hand["one"]).mean() > 1


def test_compare_rows_sweep_inside_a_component(run: runner.Run, hand: dict[str, Any]) -> None:
    cells = run.cells("grid")
    assert [c.row for c in cells] == ["base", "a unet=0.5 te=0.3", "a unet=1 te=0.3"]
    assert cells[1].adapters == {"a": {"unet": 0.5, "text_encoder": 0.3}}
    for cell, key in zip(cells, ["plain", "unet=0.5", "unet=1"], strict=True):
        assert np.abs(np.array(cell.image).astype(int) - hand[key]).max() <= 1, key


def test_a_component_the_adapter_lacks_is_refused_at_run_time() -> None:
    from runner.backends.diffusers_backend import DiffusersBackend
    from runner.spec.types import Adapter, Model

    backend = DiffusersBackend("cpu", "float32")
    model = builtin.resolve("tiny-sd")
    backend.load_model(Model("diffusers", str(model)), model)
    found = builtin.resolve("tiny-sd-lora-a")
    backend.load_adapter(Adapter("a", str(found)), found)
    with pytest.raises(StepError, match="no LoRA component 'text_encoder_2'"):
        backend.set_adapters({"a": {"text_encoder_2": 0.5}})
    # diffusers passes over a block without attention layers (or none at all) without a word
    with pytest.raises(StepError, match=r"up\.block_7 has no attention layers .*: block_\d"):
        backend.set_adapters({"a": {"unet": {"up": {"block_7": 0.5}}}})
    with pytest.raises(StepError, match=r"down\.block_0 has no attention layers"):
        backend.set_adapters({"a": {"unet": {"down": {"block_0": 0.5}}}})
    with pytest.raises(StepError, match="Expected 2 scales for up.block_0, got 9"):
        backend.set_adapters({"a": {"unet": {"up": {"block_0": [0.5] * 9}}}})
