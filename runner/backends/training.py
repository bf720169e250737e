"""Fine-tune one LoRA of a causal LM: a plain torch loop, deterministic on a CPU.

By hand it is: `torch.manual_seed(seed)` (dropout draws from it); the record order from
`torch.randperm(n, generator=torch.Generator().manual_seed(seed))`, a new permutation each
time the records run out; `batch_size` records a step, each tokenized alone (cut to
`max_length`), padded on the right, labels -100 on the padding and, with prompt +
completion, on the prompt's tokens; `model(..., labels=...).loss` (transformers' mean over
the labelled tokens), `backward`, `AdamW(the adapter's LoRA weights, lr).step()`. Only the
adapter's own weights train; the model runs in training mode (LoRA dropout on) meanwhile.

Every `checkpoint_every` steps the loop hands over a checkpoint: the adapter's weights,
AdamW's state, torch's RNG state (dropout) and the step count, as a safetensors file and a
JSON file (no pickle). A loop started from one skips the records the finished steps used
(the record order is a function of the seed alone) and gives the same tensors, to the bit,
as one that never stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch

from runner.errors import StepError
from runner.record.layout import CHECKPOINT_STATE, CHECKPOINT_TENSORS

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


def checkpoint(
    done: int,
    losses: list[dict[str, Any]],
    params: list[torch.nn.Parameter],
    optimizer: Any,
    device: str,
) -> dict[str, bytes]:
    """The loop's state after DONE steps, as file name -> bytes."""
    from safetensors.torch import save

    tensors = {f"weight.{i}": p.detach().to("cpu").contiguous() for i, p in enumerate(params)}
    for i, state in optimizer.state_dict()["state"].items():
        tensors.update({f"optimizer.{i}.{k}": v.to("cpu").contiguous() for k, v in state.items()})
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.startswith("cuda"):  # dropout on a GPU draws from its own generator
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    data = save(tensors)
    state = {
        "steps_done": done,
        "losses": losses,
        CHECKPOINT_TENSORS: hashlib.sha256(data).hexdigest(),
    }
    text = json.dumps(state, sort_keys=True, indent=1).encode() + b"\n"
    return {CHECKPOINT_TENSORS: data, CHECKPOINT_STATE: text}


def restore(
    files: dict[str, bytes],
    step: Train,
    params: list[torch.nn.Parameter],
    optimizer: Any,
    device: str,
) -> tuple[int, list[dict[str, Any]]]:
    """Put a checkpoint's state back into PARAMS, OPTIMIZER and torch's RNG; returns the
    steps it had done and their losses. (Whoever hands FILES over has checked that the JSON
    names the tensors file beside it.)"""
    from safetensors.torch import load

    try:
        state = json.loads(files[CHECKPOINT_STATE])
        done, losses = int(state["steps_done"]), list(state["losses"])
        tensors = load(files[CHECKPOINT_TENSORS])
        weights = [tensors[f"weight.{i}"] for i in range(len(params))]
    except (KeyError, ValueError, TypeError) as error:
        raise StepError(f"the checkpoint cannot be read: {error}") from None
    if [w.shape for w in weights] != [p.shape for p in params]:
        raise StepError("the checkpoint holds weights of other shapes than the adapter's")
    if not 0 < done <= step.steps or len(losses) != done:
        raise StepError(f"the checkpoint is of step {done}, not one of this step's {step.steps}")
    with torch.no_grad():
        for param, weight in zip(params, weights, strict=True):
            param.copy_(weight)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, i, name = key.split(".", 2)
            kept.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({**optimizer.state_dict(), "state": kept})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and device.startswith("cuda"):
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return done, losses


def train(
    model: Any,
    tokenizer: Any,
    step: Train,
    device: str,
    tick: Callable[[int, float], None],
    start: dict[str, bytes] | None = None,
    keep: Callable[[dict[str, bytes]], None] = lambda files: None,
) -> list[dict[str, Any]]:
    """Run the step's optimizer steps on adapter `step.adapter`, from checkpoint START when
    given; KEEP gets a checkpoint every `step.checkpoint_every` steps. Returns one record a
    step: step, loss, learning_rate."""
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
    finished, losses = restore(start, step, params, optimizer, device) if start else (0, [])
    indices = islice(indices, finished * step.batch_size, None)  # what the finished steps took
    model.train()
    try:
        for done in range(finished + 1, step.steps + 1):
            ids, mask, labels = batch([records[next(indices)] for _ in range(step.batch_size)], pad)
            out = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
            )
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = float(out.loss.detach())
            losses.append({"step": done, "loss": loss, "learning_rate": step.learning_rate})
            if done % step.checkpoint_every == 0 and done < step.steps:
                keep(checkpoint(done, losses, params, optimizer, device))
            tick(done, loss)
    finally:
        model.eval()
        for parameter in params:
            parameter.requires_grad_(False)
    return losses
