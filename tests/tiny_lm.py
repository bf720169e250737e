"""Tiny causal LMs and LoRA adapters for tests, built from config objects and seeded."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a tiny model for tests writes words at random",
    "hello world, this is a short sentence about cats and dogs",
]


def make_tokenizer() -> Any:
    """A byte-level BPE with <pad>, <s> (bos) and </s> (eos) and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_base(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random 2-layer Llama with peaked logits (so greedy ties do not happen) and a tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_lora(
    base: Path,
    folder: Path,
    seed: int,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    base_name: str | None = None,
) -> Path:
    """A PEFT LoRA folder whose lora_B is random (init_lora_weights=False), so it has an effect."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder, save_embedding_layers=False)
    if base_name is not None:
        set_base_name(folder, base_name)
    return folder


def set_base_name(folder: Path, base_name: str) -> None:
    """Rewrite base_model_name_or_path in an adapter folder's adapter_config.json."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_name
    path.write_text(json.dumps(config, indent=2))


def load_base(folder: Path) -> tuple[Any, Any]:
    """The oracle's model and left-padding tokenizer, loaded with the documented calls."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    return model, tokenizer


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], seed: int = 0, **kwargs: Any
) -> list[list[int]]:
    """Generate by hand: one left-padded batch, torch seeded right before; new tokens to eos."""
    batch = tokenizer(list(prompts), padding=True, return_tensors="pt")
    torch.manual_seed(seed)
    out = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return [
        cut_at_eos(row, tokenizer.eos_token_id)
        for row in out[:, batch["input_ids"].shape[1] :].tolist()
    ]


def cut_at_eos(row: list[int], eos: int) -> list[int]:
    """The tokens up to and including the first eos."""
    return row[: row.index(eos) + 1] if eos in row else row
