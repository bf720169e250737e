"""PNG infotext names the model and every LoRA with its hash (CONTRACT section 9), read back
with sd-parsers (what image browsers and civitai tooling use) against hashes computed here
from the files themselves."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from sd_parsers import ParserManager

import runner
from runner.record.pnginfo import parse_parameters, read_png_metadata

SPEC = """\
version: 1
name: infotext
seed: 4
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
  b: {path: builtin:tiny-sd-lora-b}
defaults:
  generate: {num_inference_steps: 2, guidance_scale: 6.5}
steps:
  - op: load
    adapters: [a, b]
  - op: set_adapters
    adapters: {a: 1.0, b: 0.5}
  - op: generate
    prompt: a red cube
    negative_prompt: blurry
  - op: compare
    adapters: [base, b]
    prompt: a blue ball
"""


def _autov3(file: Path) -> str:
    """civitai's AUTOV3: sha256 of a safetensors file's bytes after its header."""
    data = file.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + size :]).hexdigest()


def test_model_and_lora_hashes_read_back_by_sd_parsers(tmp_path: Path) -> None:
    from runner import builtin

    (tmp_path / "spec.yaml").write_text(SPEC)
    run = runner.run(tmp_path / "spec.yaml", out=tmp_path / "runs")
    unet = builtin.resolve("tiny-sd") / "unet" / "diffusion_pytorch_model.safetensors"
    model_v2 = hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    lora = {
        n: builtin.resolve(f"tiny-sd-lora-{n}") / "pytorch_lora_weights.safetensors"
        for n in ("a", "b")
    }
    v2 = {n: hashlib.sha256(f.read_bytes()).hexdigest()[:10] for n, f in lora.items()}
    v3 = {n: _autov3(f)[:12] for n, f in lora.items()}

    png = next((run.dir / "outputs").glob("03-*/0.png"))
    info = ParserManager().parse(png)
    assert info is not None
    (sampler,) = info.samplers
    assert info.full_prompt == "a red cube" and info.full_negative_prompt == "blurry"
    assert sampler.parameters["steps"] == "2" and sampler.parameters["seed"] == "4"
    assert sampler.parameters["cfg_scale"] == "6.5"
    assert sampler.model is not None
    assert (sampler.model.name, sampler.model.hash) == ("tiny-sd", model_v2)
    assert info.metadata["Hashes"] == {"model": model_v2, "lora:a": v2["a"], "lora:b": v2["b"]}
    # A1111's own reader: `Lora hashes` JSON-quoted, AUTOV3's first 12 hex per LoRA
    ours = parse_parameters(read_png_metadata(png)["parameters"])
    assert ours["Lora hashes"] == f"a: {v3['a']}, b: {v3['b']}"
    assert '"a: ' in read_png_metadata(png)["parameters"]  # quoted as A1111 writes it
    assert (ours["Model"], ours["Model hash"]) == ("tiny-sd", model_v2)
    assert json.loads(ours["Hashes"])["lora:b"] == v2["b"]

    # a compare cell names the adapters of its row only; the base row none
    cells = sorted((run.dir / "outputs").glob("04-*/[0-9].png"))
    base, row_b = (ParserManager().parse(f) for f in cells)
    assert base is not None and row_b is not None
    assert base.metadata["Hashes"] == {"model": model_v2}
    assert row_b.metadata["Hashes"] == {"model": model_v2, "lora:b": v2["b"]}
