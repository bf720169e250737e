"""Whole specs through `runner run` against the same steps written by hand, on OPT and GPT-2.

The hand-written side uses only the documented transformers and peft calls; the runner's
completions.jsonl must hold exactly the tokens those calls give.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraLayer
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    OPTConfig,
    OPTForCausalLM,
)

from runner import builtin
from runner.cli import main

PROMPTS = ["The cat", "A little bird flew"]
LORA = {"r": 4, "lora_alpha": 8, "init_lora_weights": False}


def tiny(kind: str, folder: Path) -> Path:
    """A random tiny OPT or GPT-2 saved as the hub serves it, with a real tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(builtin.resolve("tiny-causal-lm"))
    torch.manual_seed(0)
    if kind == "opt":
        config = OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            init_std=0.2,
        )
        model: Any = OPTForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            initializer_range=0.2,
        )
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def adapter_folder(base: Path, folder: Path, seed: int, targets: list[str]) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    fan = {"fan_in_fan_out": True} if "c_attn" in targets else {}
    peft_model = PeftModel(
        model, LoraConfig(task_type="CAUSAL_LM", target_modules=targets, **LORA, **fan)
    )
    peft_model.save_pretrained(folder)
    return folder


def by_hand(base: Path, a: Path, targets: list[str]) -> list[list[list[int]]]:
    """The spec's steps with transformers' PEFT integration, as its docs write them."""
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    fan = {"fan_in_fan_out": True} if "c_attn" in targets else {}

    def generate(prompts: list[str], seed: int = 0, **kwargs: Any) -> list[list[int]]:
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        torch.manual_seed(seed)
        out = model.generate(
            **batch, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id, **kwargs
        )
        rows = out[:, batch["input_ids"].shape[1] :].tolist()
        eos = tokenizer.eos_token_id
        return [row[: row.index(eos) + 1] if eos in row else row for row in rows]

    outputs = [generate(PROMPTS)]
    model.load_adapter(str(a), adapter_name="a")
    torch.manual_seed(0)  # the runner makes a config adapter right after manual_seed(0)
    model.add_adapter(
        LoraConfig(task_type="CAUSAL_LM", target_modules=targets, **LORA, **fan), adapter_name="b"
    )
    model.eval()
    outputs.append(generate(PROMPTS))  # b, the last loaded, alone
    model.set_adapter("a")
    outputs.append(generate(PROMPTS))
    model.set_adapter(["a", "b"])
    for module in model.modules():  # diffusers' meaning of weights: base + sum w x delta
        if isinstance(module, LoraLayer):
            module.set_scale("a", 0.5)
            module.set_scale("b", 0.7)
    outputs.append(generate(PROMPTS))
    model.disable_adapters()
    outputs.append(generate(PROMPTS))
    model.enable_adapters()
    outputs.append(generate(PROMPTS[:1], seed=5, do_sample=True, top_k=20))
    return outputs


SPEC = """\
version: 1
device: cpu
model: {{family: transformers, path: {base}}}
adapters:
  a: {{path: {a}}}
  b:
    config: {{type: lora, task_type: CAUSAL_LM, r: 4, lora_alpha: 8, init_lora_weights: false,
              target_modules: {targets}{fan}}}
defaults:
  generate: {{max_new_tokens: 8, prompt: {prompts}}}
steps:
  - {{op: generate, id: base}}
  - {{op: load, adapters: [a, b]}}
  - {{op: generate, id: last-loaded}}
  - {{op: set_adapters, adapters: a}}
  - {{op: generate, id: only-a}}
  - {{op: set_adapters, adapters: {{a: 0.5, b: 0.7}}}}
  - {{op: generate, id: weighted}}
  - {{op: disable}}
  - {{op: generate, id: disabled}}
  - {{op: enable}}
  - {{op: generate, id: sampled, prompt: "{first}", do_sample: true, top_k: 20, seed: 5}}
"""


@pytest.mark.parametrize("kind", ["opt", "gpt2"])
def test_spec_gives_the_tokens_of_the_hand_written_calls(kind: str, tmp_path: Path) -> None:
    targets = ["q_proj", "v_proj"] if kind == "opt" else ["c_attn"]
    base = tiny(kind, tmp_path / "base")
    a = adapter_folder(base, tmp_path / "a", seed=1, targets=targets)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(
            base=base,
            a=a,
            targets=json.dumps(targets),
            prompts=json.dumps(PROMPTS),
            first=PROMPTS[0],
            fan=", fan_in_fan_out: true" if kind == "gpt2" else "",
        )
    )
    result = CliRunner().invoke(
        main, ["run", str(spec), "--out", str(tmp_path / "runs")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())
    folders = ["01-base", "03-last-loaded", "05-only-a", "07-weighted", "09-disabled", "11-sampled"]
    ours = [
        [
            json.loads(line)["token_ids"]
            for line in (run / "outputs" / f / "completions.jsonl").open()
        ]
        for f in folders
    ]
    expected = by_hand(base, a, targets)
    assert ours == expected
    # the outputs really differ from step to step, or the comparison proves little
    assert len({json.dumps(o) for o in expected[:4]}) == 4
    assert expected[4] == expected[0]


def test_the_spec_needs_no_copy_of_the_adapter_base(tmp_path: Path) -> None:
    """An adapter folder as model path finds a relative base beside it, whatever the cwd."""
    base = tiny("opt", tmp_path / "models" / "base")
    a = adapter_folder(base, tmp_path / "models" / "a", seed=1, targets=["q_proj", "v_proj"])
    config = json.loads((a / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "../base"
    (a / "adapter_config.json").write_text(json.dumps(config))
    shutil.copy(base / "tokenizer.json", a / "tokenizer.json")
    spec = tmp_path / "specs" / "s.yaml"
    spec.parent.mkdir()
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: ../models/a}\n"
        f"steps:\n  - {{op: generate, prompt: {json.dumps(PROMPTS)}, max_new_tokens: 8}}\n"
    )
    result = CliRunner().invoke(
        main, ["run", str(spec), "--out", str(tmp_path / "runs")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    rows = [
        json.loads(line)
        for line in (Path(result.stdout.strip()) / "outputs/01-generate/completions.jsonl").open()
    ]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), a).eval()
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    expected = out[:, batch["input_ids"].shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    assert [r["token_ids"] for r in rows] == [
        e[: e.index(eos) + 1] if eos in e else e for e in expected
    ]
    assert rows[0]["adapters"] == {"default": 1.0}


IMAGE_SPEC = """\
version: 1
device: cpu
model: {{family: diffusers, path: {base}}}
adapters:
  style: {{path: {style}, weight_name: {style_file}}}
  kohya: {{path: {kohya}}}
defaults:
  generate: {{prompt: a red cube, num_inference_steps: 2, height: 64, width: 64}}
steps:
  - {{op: load, adapters: [style, kohya]}}
  - {{op: generate, id: kohya}}
  - {{op: set_adapters, adapters: style}}
  - {{op: generate, id: style, num_images_per_prompt: 2}}
  - {{op: set_adapters, adapters: {{style: 0.6, kohya: 0.8}}}}
  - {{op: generate, id: blend, negative_prompt: blurry, lora_scale: 0.5}}
  - {{op: disable}}
  - {{op: generate, id: base}}
  - {{op: enable}}
  - {{op: generate, id: again}}
"""


def test_image_spec_gives_the_pixels_of_the_hand_written_calls(tmp_path: Path) -> None:
    import numpy as np
    from diffusers import DiffusionPipeline
    from PIL import Image

    base = builtin.resolve("tiny-sdxl")
    style, kohya = builtin.resolve("tiny-sdxl-lora-a"), builtin.resolve("tiny-sdxl-lora-kohya")
    (style_file,) = [p.name for p in style.glob("*.safetensors")]
    spec = tmp_path / "spec.yaml"
    spec.write_text(IMAGE_SPEC.format(base=base, style=style, style_file=style_file, kohya=kohya))
    result = CliRunner().invoke(
        main, ["run", str(spec), "--out", str(tmp_path / "runs")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    run = Path(result.stdout.strip())

    pipe = DiffusionPipeline.from_pretrained(base, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    args = {"num_inference_steps": 2, "height": 64, "width": 64}

    def draw(n: int = 1, **extra: Any) -> list[np.ndarray]:
        generators = [torch.Generator("cpu").manual_seed(k) for k in range(n)]
        images = pipe(
            prompt=["a red cube"], num_images_per_prompt=n, generator=generators, **args, **extra
        ).images
        return [np.asarray(i) for i in images]

    pipe.load_lora_weights(str(style), weight_name=style_file, adapter_name="style")
    pipe.load_lora_weights(str(kohya), adapter_name="kohya")
    expected = {"02-kohya": draw()}
    pipe.set_adapters(["style"])
    expected["04-style"] = draw(2)
    pipe.set_adapters(["style", "kohya"], adapter_weights=[0.6, 0.8])
    expected["06-blend"] = draw(negative_prompt=["blurry"], cross_attention_kwargs={"scale": 0.5})
    pipe.disable_lora()
    expected["08-base"] = draw()
    pipe.enable_lora()
    expected["10-again"] = draw()

    for folder, images in expected.items():
        ours = [
            np.asarray(Image.open(run / "outputs" / folder / f"{k}.png"))
            for k in range(len(images))
        ]
        assert all((a == b).all() for a, b in zip(ours, images, strict=True)), folder
    assert not (expected["02-kohya"][0] == expected["04-style"][0]).all()
    assert not (expected["06-blend"][0] == expected["08-base"][0]).all()
    assert (
        expected["06-blend"][0] != expected["10-again"][0]
    ).any()  # lora_scale changed the blend
