"""specs/quickstart-text.yaml written by hand against transformers and peft (benchmark peer)."""

from __future__ import annotations

import torch
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoTokenizer

from runner.builtin import resolve

PROMPTS = ["The cat", "A little bird"]


def generate(model, tokenizer, prompts, seed=0, **kwargs):
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    out = model.generate(**batch, max_new_tokens=16, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def set_weights(model, weights):
    model.set_adapter(list(weights))
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name, weight in weights.items():
                module.set_scale(name, weight)


def main() -> None:
    base = resolve("tiny-causal-lm")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    print(generate(model, tokenizer, PROMPTS))
    model.load_adapter(str(resolve("tiny-causal-lm-lora-a")), adapter_name="a")
    model.load_adapter(str(resolve("tiny-causal-lm-lora-b")), adapter_name="b")
    model.set_adapter("a")
    print(generate(model, tokenizer, PROMPTS))
    model.set_adapter("b")
    print(generate(model, tokenizer, PROMPTS))
    set_weights(model, {"a": 0.5, "b": 0.5})
    print(generate(model, tokenizer, PROMPTS[:1]))
    model.disable_adapters()
    print(generate(model, tokenizer, PROMPTS[:1]))
    model.enable_adapters()
    print(generate(model, tokenizer, PROMPTS[:1], seed=7, do_sample=True, temperature=0.8))


if __name__ == "__main__":
    main()
