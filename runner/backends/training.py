"""Fine-tune one LoRA of a causal LM: a plain torch loop, deterministic on a CPU.

By hand it is: `torch.manual_seed(seed)` (dropout draws from it); the record order from
`torch.randperm(n, generator=torch.Generator().manual_seed(seed))`, a new permutation each
time the records run out; `batch_size` records a step, each tokenized alone (cut to
`max_length`), padded on the right, labels -100 on the padding and, with prompt +
completion, on the prompt's tokens; `model(..., labels=...).loss` (transformers' mean over
the labelled tokens), `backward`, `AdamW(the adapter's LoRA weights, lr).step()`. Only the
adapter's own weights train; the model runs in training mode (LoRA dropout on) meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from runner.errors import StepError

if TYPE_CHECKING:
    from runner.spec.types import Train

IGNORE = -100  # what transformers' loss leaves out


def examples(step: Train, tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) of every record, in record order."""
    out = []
    if step.texts:
        for text in step.texts:
            ids = tokenizer(text)["input_ids"][: step.max_length]
            out.append((ids, list(ids)))
        return out
    for prompt, completion in zip(step.prompts, step.completions, strict=True):
        head = len(tokenizer(prompt)["input_ids"])
        ids = tokenizer(prompt + completion)["input_ids"][: step.max_length]
        out.append((ids, [IGNORE] * min(head, len(ids)) + ids[head:]))
    return out


def order(count: int, seed: int) -> Iterator[int]:
    """Record indices without end: one seeded permutation after another."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from torch.randperm(count, generator=generator).tolist()


def batch(
    chosen: list[tuple[list[int], list[int]]], pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and labels, padded on the right."""
    width = max(len(ids) for ids, _ in chosen)
    ids = [i + [pad] * (width - len(i)) for i, _ in chosen]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in chosen]
    labels = [lab + [IGNORE] * (width - len(lab)) for _, lab in chosen]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def trainable(model: Any, name: str) -> list[torch.nn.Parameter]:
    """Adapter NAME's own weights, made the only ones that take gradients."""
    mine = [p for n, p in model.named_parameters() if f".{name}." in n or n.endswith(f".{name}")]
    if not mine:
        raise StepError(f"adapter '{name}' has no weights to train")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in mine:
        parameter.requires_grad_(True)
    return mine


def train(
    model: Any,
    tokenizer: Any,
    step: Train,
    device: str,
    tick: Callable[[int, float], None],
) -> list[dict[str, Any]]:
    """Run the step's optimizer steps on adapter `step.adapter`; returns one record a step:
    step, loss, learning_rate."""
    records = examples(step, tokenizer)
    if not records:
        raise StepError("no records to train on")
    if any(all(label == IGNORE for label in labels) for _, labels in records):
        raise StepError(
            "a record has no token to learn (an empty completion, or cut by max_length)"
        )
    params = trainable(model, step.adapter)
    optimizer = torch.optim.AdamW(params, lr=step.learning_rate)
    indices = order(len(records), step.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    torch.manual_seed(step.seed)
    losses = []
    model.train()
    try:
        for done in range(1, step.steps + 1):
            ids, mask, labels = batch([records[next(indices)] for _ in range(step.batch_size)], pad)
            out = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = float(out.loss.detach())
            losses.append({"step": done, "loss": loss, "learning_rate": step.learning_rate})
            tick(done, loss)
    finally:
        model.eval()
        for parameter in params:
            parameter.requires_grad_(False)
    return losses
