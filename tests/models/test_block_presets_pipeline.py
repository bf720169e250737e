"""A block weight preset against diffusers' set_adapters with the same mapping written by
hand, on a tiny pipeline whose UNet has SD 1.x's block layout (built here): the same images
within 1/255; the preset changes the image; a UNet of another layout is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict

import runner
from runner import builtin
from runner.errors import StepError

PROMPT = "a photo of a cat"
DRAW = {"num_inference_steps": 2, "height": 32, "width": 32}
# MIDD of the LoRA Block Weight extension (1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0), by hand
MIDD = {
    "text_encoder": 1.0,
    "unet": {
        "down": {"block_0": [0.0, 0.0], "block_1": [0.0, 1.0], "block_2": [1.0, 1.0]},
        "mid": 1.0,
        "up": {"block_1": [1.0, 1.0, 1.0], "block_2": [1.0, 0.0, 0.0], "block_3": [0.0] * 3},
    },
}


def draw(pipe: Any, seed: int) -> np.ndarray:
    generator = [torch.Generator("cpu").manual_seed(seed)]
    return np.array(pipe(prompt=[PROMPT], generator=generator, **DRAW).images[0]).astype(int)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny SD pipeline with an SD 1.x-shaped UNet, and a LoRA on its UNet and text
    encoder made with peft (random B, so every layer changes the image)."""
    root = tmp_path_factory.mktemp("sd1-layout")
    pipe: Any = DiffusionPipeline.from_pretrained(builtin.resolve("tiny-sd"), dtype=torch.float32)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=2,
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    pipe.save_pretrained(root / "pipe", safe_serialization=True)
    layers = {}
    for component, targets in (("unet", ["to_q", "to_k", "to_v", "to_out.0"]),
                               ("text_encoder", ["q_proj", "v_proj"])):  # fmt: skip
        model = getattr(pipe, component)
        model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets,
                                     init_lora_weights=False))  # fmt: skip
        state = get_peft_model_state_dict(model)
        layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(
            {k: v * 3 for k, v in state.items()}
        )
    StableDiffusionPipeline.save_lora_weights(root / "lora", **layers)
    return root / "pipe", root / "lora"


def test_a_preset_gives_the_hand_written_mapping_s_pixels(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    pipe_dir, lora_dir = folders
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nseed: 4\ndevice: cpu\nmodel: {{family: diffusers, path: {pipe_dir}}}\n"
        f"adapters:\n  a: {{path: {lora_dir}}}\n"
        f"defaults:\n  generate: {DRAW}\n".replace("'", "")
        + "steps:\n  - {op: load, adapters: a}\n"
        f"  - {{op: generate, id: one, prompt: {PROMPT}}}\n"
        "  - {op: set_adapters, adapters: {a: {unet: {preset: MIDD}}}}\n"
        f"  - {{op: generate, id: midd, prompt: {PROMPT}}}\n"
        "  - {op: set_adapters, adapters: {a: {unet: {preset: MIDD}, text_encoder: 0.3}}}\n"
        f"  - {{op: generate, id: midd_te, prompt: {PROMPT}}}\n"
    )
    run = runner.run(spec, out=tmp_path / "runs")
    pipe: Any = DiffusionPipeline.from_pretrained(pipe_dir, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_dir), adapter_name="a")
    pipe.set_adapters(["a"], adapter_weights=[MIDD])
    midd = draw(pipe, 4)
    pipe.set_adapters(["a"], adapter_weights=[{**MIDD, "text_encoder": 0.3}])
    midd_te = draw(pipe, 4)

    def pixels(step: str) -> np.ndarray:
        (picture,) = run.outputs[step]
        return np.array(picture.image).astype(int)  # type: ignore[union-attr]

    assert np.abs(pixels("midd") - midd).max() <= 1
    assert np.abs(pixels("midd_te") - midd_te).max() <= 1
    assert np.abs(pixels("one") - midd).max() > 1  # the preset changed the image
    assert np.abs(midd_te - midd).max() > 1  # and text_encoder beside it counts
    assert run.manifest.steps[3].active_adapters == {"a": {"unet": {"preset": "MIDD"}}}


def test_a_preset_on_another_unet_layout_fails_at_the_step(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n"
        "steps:\n  - {op: load, adapters: a}\n"
        "  - {op: set_adapters, adapters: {a: {unet: {preset: ALL}}}}\n"
    )
    with pytest.raises(StepError, match="block weight presets are for SD 1.x UNets"):
        runner.run(spec, out=tmp_path / "runs")
