"""A quantized base (bitsandbytes, on the CPU) with a LoRA on top, against transformers+peft
with the same BitsAndBytesConfig by hand: the same tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

import runner
from runner import builtin

pytest.importorskip("bitsandbytes")

PROMPTS = ["The cat", "Once upon a time"]
FORMS: list[tuple[str, dict[str, Any]]] = [
    (
        "{backend: bitsandbytes, bits: 4, quant_type: nf4, compute_dtype: float32}",
        {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": torch.float32,
        },
    ),
    ("{backend: bitsandbytes, bits: 8}", {"load_in_8bit": True}),
]


@pytest.mark.parametrize(("written", "by_hand"), FORMS, ids=["nf4", "8bit"])
def test_a_quantized_base_with_a_lora_equals_the_same_calls_by_hand(
    tmp_path: Path, written: str, by_hand: dict[str, Any]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nseed: 2\ndevice: cpu\ndtype: float32\n"
        f"model: {{family: transformers, path: builtin:tiny-causal-lm, quantization: {written}}}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        f"  - {{op: generate, id: out, prompt: {PROMPTS}, max_new_tokens: 10}}\n"
        "  - {op: disable}\n"
        f"  - {{op: generate, id: base, prompt: {PROMPTS}, max_new_tokens: 10}}\n"
    )
    run = runner.run(spec, out=tmp_path / "runs")
    assert run.manifest.model_setup is not None
    assert run.manifest.model_setup.quantization is not None
    assert run.manifest.model_setup.quantization["bits"] == (4 if "4" in written else 8)

    folder = builtin.resolve("tiny-causal-lm")
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        quantization_config=BitsAndBytesConfig(**by_hand),
        dtype=torch.float32,
        device_map="cpu",
    )
    assert any("bit" in type(m).__name__.lower() for m in model.modules())  # really quantized
    model.load_adapter(str(builtin.resolve("tiny-causal-lm-lora-a")), adapter_name="a")
    model.set_adapter("a")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"

    def tokens() -> list[list[int]]:
        batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
        torch.manual_seed(2)
        out = model.generate(**batch, max_new_tokens=10, pad_token_id=tokenizer.pad_token_id)
        return out[:, batch["input_ids"].shape[1] :].tolist()

    def runner_tokens(step: str) -> list[list[int]]:
        return [t.token_ids for t in run.outputs[step]]  # type: ignore[union-attr]

    expected = tokens()
    got = runner_tokens("out")
    assert got == [row[: len(g)] for row, g in zip(expected, got, strict=True)]
    model.disable_adapters()
    base = tokens()
    assert runner_tokens("base") == [
        row[: len(g)] for row, g in zip(base, runner_tokens("base"), strict=True)
    ]
    assert base != expected  # the LoRA changed what the quantized base says
