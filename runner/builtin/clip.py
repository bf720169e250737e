"""A builtin CLIP model for `clip_score` in tests: tiny, seeded, random, made from configs.

`tiny-clip` is a CLIPModel with a CLIPProcessor (the tiny pipelines' BPE tokenizer, 32x32
images): what `clip: {path: builtin:tiny-clip}` loads. Its scores mean nothing; they are
numbers a test can hold against CLIPModel called by hand.
"""

from __future__ import annotations

from pathlib import Path

from runner.builtin.diffusion import write_tokenizer
from runner.builtin.entry import Builtin


def make_tiny_clip(folder: Path, base: Path | None = None) -> None:
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    vocab_size = write_tokenizer(folder / "_tokenizer")
    torch.manual_seed(10)  # a seed whose cosines on the tiny pipelines' pictures have both signs
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder, safe_serialization=True)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    for file in (folder / "_tokenizer").iterdir():
        file.unlink()
    (folder / "_tokenizer").rmdir()


CATALOG: dict[str, Builtin] = {"tiny-clip": Builtin("clip", "diffusers", make_tiny_clip)}
