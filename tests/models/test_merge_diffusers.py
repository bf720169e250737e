"""`op: merge` and `op: save` on a diffusers pipeline against peft's mathematics by hand.

diffusers has no add_weighted_adapter; the oracle applies peft's merge functions
(`peft.utils.merge_utils`) to the LoRA tensors of a pipeline loaded by hand, layer by layer,
as peft's documentation defines each method, and loads the runner's files back with
`load_lora_weights`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from peft.tuners.lora import LoraLayer
from peft.utils.merge_utils import ties
from PIL import Image

from runner import api, builtin

WEIGHTS = {"a": 1.0, "b": 0.5}
IMAGE = {"num_inference_steps": 2, "height": 64, "width": 64, "seed": 3}
PROMPT = "a photo of a cat"
PARTS = ("unet", "text_encoder")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generate(step_id: str) -> dict[str, Any]:
    return {"op": "generate", "id": step_id, "prompt": PROMPT, **IMAGE}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> api.Run:
    steps = [
        {"op": "load", "adapters": ["a", "b", "k"]},
        {"op": "merge", "id": "cat", "name": "c", "method": "cat", "adapters": WEIGHTS},
        generate("merged-cat"),
        {
            "op": "merge",
            "id": "ties",
            "name": "t",
            "method": "ties",
            "adapters": WEIGHTS,
            "density": 0.5,
        },
        generate("merged-ties"),
        {"op": "save", "id": "kohya-c", "adapter": "c", "format": "kohya"},
        {"op": "save", "id": "kohya-k", "adapter": "k", "format": "kohya"},
        {"op": "set_adapters", "adapters": "k"},
        generate("plain-k"),
    ]
    spec = {
        "version": 1,
        "name": "merging-pipes",
        "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
        "adapters": {
            "a": {"path": "builtin:tiny-sd-lora-a"},
            "b": {"path": "builtin:tiny-sd-lora-b"},
            "k": {"path": "builtin:tiny-sd-lora-kohya"},
        },
        "steps": steps,
    }
    return api.run(spec, out=tmp_path_factory.mktemp("runs"))


def folder(run: api.Run, step_id: str) -> Path:
    (found,) = [p for p in (run.dir / "outputs").iterdir() if p.name.split("-", 1)[1] == step_id]
    return found


def hand(*loras: tuple[Path, str]) -> Any:
    pipe = DiffusionPipeline.from_pretrained(builtin.resolve("tiny-sd"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    for file, name in loras:
        pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name)
    return pipe


def builtin_file(name: str) -> Path:
    (file,) = sorted(builtin.resolve(name).glob("*.safetensors"))
    return file


def layers(pipe: Any, name: str) -> dict[str, Any]:
    return {
        f"{part}.{path}": layer
        for part in PARTS
        for path, layer in getattr(pipe, part).named_modules()
        if isinstance(layer, LoraLayer) and name in layer.lora_A
    }


def pixels(file: Path) -> np.ndarray:
    return np.asarray(Image.open(file).convert("RGB"), dtype=np.int16)


def drawn(pipe: Any) -> np.ndarray:
    image = pipe(
        PROMPT,
        num_inference_steps=IMAGE["num_inference_steps"],
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(IMAGE["seed"]),
    ).images[0]
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_cat_is_the_weighted_sum_of_deltas_and_loads_back(run: api.Run) -> None:
    both = hand((builtin_file("tiny-sd-lora-a"), "a"), (builtin_file("tiny-sd-lora-b"), "b"))
    saved = hand((folder(run, "cat") / "pytorch_lora_weights.safetensors", "x"))
    mine, theirs = layers(saved, "x"), layers(both, "a") | layers(both, "b")
    assert sorted(mine) == sorted(theirs) and mine
    for key, layer in mine.items():
        ours = theirs[key]
        want = sum(w * ours.get_delta_weight(n) for n, w in WEIGHTS.items() if n in ours.lora_A)
        torch.testing.assert_close(layer.get_delta_weight("x"), want, rtol=1e-5, atol=1e-6)
    # the pixels the runner drew under the merged adapter are the saved file's
    got = pixels(folder(run, "merged-cat") / "0.png")
    assert np.abs(got - drawn(saved)).max() <= 1


def test_ties_is_peft_merge_utils_on_each_layer(run: api.Run) -> None:
    both = hand((builtin_file("tiny-sd-lora-a"), "a"), (builtin_file("tiny-sd-lora-b"), "b"))
    saved = hand((folder(run, "ties") / "pytorch_lora_weights.safetensors", "x"))
    mine, theirs = layers(saved, "x"), layers(both, "a")
    assert sorted(mine) == sorted(theirs) and mine
    for key, layer in mine.items():
        ours = theirs[key]
        # peft: each adapter's A and B weighted by sqrt(|weight x scaling|), the sign on A
        scaled = [w * ours.scaling[n] for n, w in WEIGHTS.items()]
        on_a = torch.tensor([math.copysign(math.sqrt(abs(s)), s) for s in scaled])
        on_b = torch.tensor([math.sqrt(abs(s)) for s in scaled])
        a = ties([ours.lora_A[n].weight.data for n in WEIGHTS], on_a, 0.5, "total")
        b = ties([ours.lora_B[n].weight.data for n in WEIGHTS], on_b, 0.5, "total")
        torch.testing.assert_close(layer.lora_A["x"].weight, a, rtol=0, atol=0)
        torch.testing.assert_close(layer.lora_B["x"].weight, b, rtol=0, atol=0)
        assert layer.scaling["x"] == 1.0
    got = pixels(folder(run, "merged-ties") / "0.png")
    assert np.abs(got - drawn(saved)).max() <= 1
    assert np.abs(got - pixels(folder(run, "merged-cat") / "0.png")).max() > 1  # they differ


def test_kohya_files_load_back_as_the_adapter_ran(run: api.Run) -> None:
    kohya = folder(run, "kohya-k") / "k.safetensors"
    from safetensors.torch import load_file

    keys = load_file(kohya)
    assert keys and all(k.startswith(("lora_unet_", "lora_te1_")) for k in keys)
    got = pixels(folder(run, "plain-k") / "0.png")
    assert np.abs(got - drawn(hand((kohya, "x")))).max() <= 1
    base = drawn(hand())
    assert np.abs(got - base).max() > 1  # the adapter changes the image
    merged = folder(run, "kohya-c") / "c.safetensors"
    assert (
        np.abs(pixels(folder(run, "merged-cat") / "0.png") - drawn(hand((merged, "x")))).max() <= 1
    )
