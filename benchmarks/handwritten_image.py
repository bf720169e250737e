"""specs/quickstart-image.yaml written by hand against diffusers (benchmark peer)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from runner.builtin import resolve

PROMPT = "a red cube on a table"
ARGS = {"num_inference_steps": 4, "height": 64, "width": 64}


def generate(pipe, n=1, seed=0):
    generators = [torch.Generator("cpu").manual_seed(seed + k) for k in range(n)]
    return pipe(prompt=[PROMPT], num_images_per_prompt=n, generator=generators, **ARGS).images


def main() -> None:
    pipe = DiffusionPipeline.from_pretrained(resolve("tiny-sdxl"), torch_dtype=torch.float32)
    pipe.load_lora_weights(resolve("tiny-sdxl-lora-a"), adapter_name="style")
    images = generate(pipe)
    pipe.load_lora_weights(resolve("tiny-sdxl-lora-kohya"), adapter_name="kohya")
    images += generate(pipe, n=2)
    pipe.set_adapters(["style", "kohya"], adapter_weights=[0.7, 0.5])
    images += generate(pipe)
    pipe.disable_lora()
    images += generate(pipe)
    pipe.enable_lora()
    images += generate(pipe)
    out = Path(tempfile.mkdtemp(prefix="handwritten-image-"))
    for k, image in enumerate(images):
        image.save(out / f"{k}.png")
    print(len(images), "images in", out)


if __name__ == "__main__":
    main()
