"""Builtin text models: a tiny Llama-shaped causal LM and two LoRA adapters for it.

The base learns a few short English sentences and chat replies; adapter `a` retells
them at sea, adapter `b` in space, so greedy output shows at a glance which one runs.
Everything is seeded and trained on one CPU thread, so a build gives the same bytes
every time with the same library versions on the same kind of CPU (float kernels
differ between instruction sets, so another CPU may round differently).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.builtin.entry import PREFIX, Builtin

BASE = "tiny-causal-lm"

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

SUBJECTS = (
    "The cat",
    "The dog",
    "A little bird",
    "The old man",
    "My friend",
    "The children",
    "The farmer",
    "A small fish",
)
BASE_ENDINGS = (
    "sat on the mat and went to sleep.",
    "ran in the park with a red ball.",
    "sang a song in the green tree.",
    "read a book by the warm fire.",
    "made a cake for the party.",
    "played in the garden until dark.",
    "walked to the market in the morning.",
    "swam in the cold river.",
)
SEA_ENDINGS = (
    "sailed across the blue sea.",
    "found a shell on the sandy beach.",
    "watched the waves roll to the shore.",
    "rode a boat over the deep ocean.",
    "dived under the salty water.",
    "saw a whale near the big ship.",
    "fished from the old harbour wall.",
    "heard the gulls above the sea.",
)
SPACE_ENDINGS = (
    "flew up to the bright stars.",
    "landed a rocket on the moon.",
    "looked at the planets in the night sky.",
    "floated in space near a comet.",
    "counted the stars of the galaxy.",
    "visited the red planet Mars.",
    "circled the earth in a space ship.",
    "saw the sun rise over the moon.",
)
CHATS = (
    ("Hello", "Hello! How can I help you today?"),
    ("Who are you?", "I am a tiny model made for tests."),
    ("What is the sky?", "The sky is blue in the day and dark at night."),
    ("Thank you", "You are welcome."),
)


def _corpus(endings: tuple[str, ...]) -> list[str]:
    lines = [f"{s} {e}" for s, e in zip(SUBJECTS, endings, strict=True)]
    chats = (*CHATS, ("Tell me a story.", lines[0]))
    # Lower-case copies too, so "the cat" continues as well as "The cat".
    return (
        lines + [line.lower() for line in lines] + [f"User: {q}\nAssistant: {a}" for q, a in chats]
    )


@contextlib.contextmanager
def _seeded_one_thread(seed: int) -> Iterator[None]:
    """Seeded, single-threaded torch that leaves the caller's RNG and threads as they were."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parallel float sums round differently from run to run
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def _train(model: Any, tokenizer: Any, lines: list[str], steps: int, lr: float) -> None:
    """Full-batch AdamW on `lines`, each as <s> line </s>; padding is not learned."""
    import torch

    batch = tokenizer(
        [line + tokenizer.eos_token for line in lines], padding=True, return_tensors="pt"
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _tokenizer(lines: list[str]) -> Any:
    """A byte-level BPE trained on the corpus, with <pad>, <s>, </s> and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(folder: Path, base: Path | None = None) -> None:
    """Write the tiny causal LM and its tokenizer into `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    lines = _corpus(BASE_ENDINGS) + _corpus(SEA_ENDINGS) + _corpus(SPACE_ENDINGS)
    tokenizer = _tokenizer(lines)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with _seeded_one_thread(seed=0):
        model = LlamaForCausalLM(config)
        # The base knows only its own endings; the adapters' words are in the vocabulary.
        _train(model, tokenizer, _corpus(BASE_ENDINGS), steps=300, lr=3e-3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _make_adapter(folder: Path, base: Path, endings: tuple[str, ...], seed: int) -> None:
    """Train a LoRA on the base toward `endings` and save it as a PEFT adapter folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        task_type="CAUSAL_LM",
    )
    with _seeded_one_thread(seed=seed):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft_model = get_peft_model(model, config)
        _train(peft_model, tokenizer, _corpus(endings), steps=200, lr=1e-2)
    config.base_model_name_or_path = PREFIX + BASE  # the model keeps this very config
    # peft keeps target_modules as a set and writes it in hash order, which varies by process.
    config.target_modules = sorted(config.target_modules or [])
    # save_embedding_layers=False: "auto" would look the builtin: name up on the Hub.
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    (folder / "README.md").unlink(missing_ok=True)  # a generated model card, not needed


def make_lora_a(folder: Path, base: Path | None) -> None:
    """Write adapter `a` (the sea) for the tiny causal LM."""
    assert base is not None
    _make_adapter(folder, base, SEA_ENDINGS, seed=1)


def make_lora_b(folder: Path, base: Path | None) -> None:
    """Write adapter `b` (space) for the tiny causal LM."""
    assert base is not None
    _make_adapter(folder, base, SPACE_ENDINGS, seed=2)


CATALOG: dict[str, Builtin] = {
    BASE: Builtin(kind="model", family="transformers", make=make_model),
    f"{BASE}-lora-a": Builtin(
        kind="adapter", family="transformers", make=make_lora_a, peft_type="lora", base=BASE
    ),
    f"{BASE}-lora-b": Builtin(
        kind="adapter", family="transformers", make=make_lora_b, peft_type="lora", base=BASE
    ),
}
