"""Several LoRA settings in one batch: peft's `adapter_names`, one adapter per batch row.

transformers' PEFT integration has no PeftModel to pass `adapter_names` through `generate`,
so for the call each LoRA layer gets it from a forward pre-hook, as peft's own
`LoraModel._enable_peft_forward_hooks` does, or (vanilla Linear LoRA) a forward of its own
that runs each adapter's rows as a slice. A row of several adapters is not one adapter:
`merge` makes it one, peft's `add_weighted_adapter(combination_type="cat")` written for a
model without a PeftModel: A stacked, B side by side, each B scaled by its weight and its
own alpha / r, so the merged delta is sum of weight x delta. It lives only in the step's
batches (the sliced forward below runs it), never in the model: nothing to delete.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
TEMPORARY = "__compare_"  # the prefix of merged adapters' names, in one step's batches
# A merged adapter: for each LoRA layer it touches, its (A, B), run at scale 1.
Merged = dict[Any, tuple[torch.Tensor, torch.Tensor]]
# A merged row costs its rows r x (in + out) multiply-adds per layer and token more than a
# one-adapter row, and r x (in + out) numbers of memory per layer for the step; its own
# batch would cost the whole base model again. For a 4096-wide model that is 25% of a
# layer's work at r = 512, so merging pays well below it; above, the row runs alone.
MAX_MERGED_RANK = 512
# On a CPU shared by more busy processes than it has cores, torch's intra-op threads wait on
# each other at every operation of a big batch: at load 12 on 2 cores a 32-row mixed
# generate took 7.1 s on 2 threads and 0.72 s on 1 (a one-cell generate 2.4 s and 0.38 s,
# four of them). A mixed call runs on one thread while the 1-minute load average exceeds
# the cores by more than SPARE (this process's own threads count in it); the outputs are
# the same, the tests hold them to the cell-by-cell steps run on every thread.
SPARE = 1.0


def lora_layers(model: Any) -> list[Any]:
    """The model's LoRA layers; walking the modules is slow, so a step asks once."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def plain(model: Any, layers: list[Any], names: list[str]) -> bool:
    """Whether every adapter is a vanilla, unmerged LoRA peft can mix (no DoRA, no variant)."""
    configs = getattr(model, "peft_config", None) or {}
    for name in names:
        config = configs.get(name)
        if config is None or str(getattr(config, "peft_type", "")) not in ("LORA", "PeftType.LORA"):
            return False
        if getattr(config, "use_dora", False) or getattr(config, "lora_bias", False):
            return False
    for layer in layers:
        if getattr(layer, "merged_adapters", None):
            return False
        if any(n in getattr(layer, "lora_variant", {}) for n in names):
            return False
    return True


def mergeable(layers: list[Any], names: list[str]) -> bool:
    """Whether `merge` can make one adapter of these: Linear LoRA layers only, a sane rank."""
    from peft.tuners.lora.layer import Linear

    total = 0
    for layer in layers:
        used = [n for n in names if n in layer.lora_A or n in layer.lora_embedding_A]
        if not used:
            continue
        if type(layer) is not Linear or getattr(layer, "fan_in_fan_out", False):
            return False
        total = max(total, sum(layer.r[n] for n in used))
    return 0 < total <= MAX_MERGED_RANK


def merge(layers: list[Any], weights: dict[str, float]) -> Merged:
    """Sum of weight x delta of each adapter in WEIGHTS, as one (A, B) per layer at scale 1:
    what `add_weighted_adapter(combination_type="cat")` would add, without adding it."""
    layers = [m for m in layers if any(a in m.lora_A for a in weights)]
    ranks = {a: max(m.r[a] for m in layers if a in m.lora_A) for a in weights}
    merged: Merged = {}
    with torch.no_grad():
        for layer in layers:
            a_parts, b_parts = [], []
            for adapter, weight in weights.items():
                if adapter in layer.lora_A:
                    a_parts.append(layer.lora_A[adapter].weight)
                    scale = weight * initial_scale(layer, adapter)
                    b_parts.append(layer.lora_B[adapter].weight * scale)
                else:  # an adapter that leaves this layer alone: zero rows and columns
                    like = next(iter(layer.lora_A.values())).weight
                    a_parts.append(like.new_zeros(ranks[adapter], layer.in_features))
                    b_parts.append(like.new_zeros(layer.out_features, ranks[adapter]))
            merged[layer] = torch.cat(a_parts, dim=0), torch.cat(b_parts, dim=1)
    return merged


def initial_scale(layer: Any, adapter: str) -> float:
    """ADAPTER's scaling at weight 1 in LAYER, as set_scale computes it: alpha / r."""
    import math

    r, alpha = layer.r[adapter], layer.lora_alpha[adapter]
    return float(alpha / math.sqrt(r) if layer.use_rslora.get(adapter, False) else alpha / r)


def set_scales(layers: list[Any], scales: dict[str, float]) -> None:
    for layer in layers:
        for name, scale in scales.items():
            layer.set_scale(name, scale)


@contextmanager
def adapter_names(
    layers: list[Any], names: list[str] | Mapping[int, list[str]], merged: dict[str, Merged]
) -> Iterator[None]:
    """Every LoRA layer's forward runs row i of the batch with adapter NAMES[i], where a
    name may be one of MERGED. NAMES may map batch sizes to names, for a model whose parts
    see different batches (a pipeline's text encoder one row per prompt, its denoiser one
    per image, twice under classifier-free guidance): a layer takes the names of its size.

    peft's `_mixed_batch_forward` gathers each adapter's rows with a list index in every
    layer at every token, behind a forward hook that hands it the names. Here the rows of
    one adapter come in runs, so a vanilla Linear LoRA layer gets a forward of its own for
    the call that takes them as slices: the same operations on the same rows as peft's
    (the base output, then `lora_B(lora_A(x)) * scaling` added in place), without the
    gathers and hooks. Other layers (embeddings, variants) get peft's, through the hook.
    """
    from peft.tuners.lora.layer import Linear

    by_size = dict(names) if isinstance(names, Mapping) else {len(names): names}
    runs = {size: _runs(of_size) for size, of_size in by_size.items()}
    first = next(iter(by_size.values()))

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        x = args[0] if args else None
        # a batch of no known size gets names of another: peft's own check refuses it
        kwargs["adapter_names"] = by_size.get(getattr(x, "shape", (0,))[0], first)
        return args, kwargs

    sliced = [m for m in layers if type(m) is Linear and not m.lora_variant]
    hooked = [m for m in layers if m not in sliced]
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in hooked]
    for layer in sliced:
        setattr(layer, "forward", _by_slices(layer, runs, merged))  # noqa: B010
    try:
        with _one_thread_when_busy():
            yield
    finally:
        for handle in handles:
            handle.remove()
        for layer in sliced:
            del layer.forward  # peft's own method again


@contextmanager
def _one_thread_when_busy() -> Iterator[None]:
    """One torch thread while the CPU has more work than cores (see SPARE)."""
    import os

    threads = torch.get_num_threads()
    busy = threads > 1 and os.getloadavg()[0] > (os.cpu_count() or 1) + SPARE
    if busy:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if busy:
            torch.set_num_threads(threads)


def _runs(names: list[str]) -> list[tuple[str, int, int]]:
    """(name, start, end) of each run of equal names."""
    runs: list[tuple[str, int, int]] = []
    for i, name in enumerate(names):
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], i + 1)
        else:
            runs.append((name, i, i + 1))
    return runs


def _by_slices(
    layer: Any, runs: dict[int, list[tuple[str, int, int]]], merged: dict[str, Merged]
) -> Any:
    import torch.nn.functional as F

    def plan(of_size: list[tuple[str, int, int]]) -> list[tuple[Any, ...]]:
        return [
            (start, end, *merged[name][layer], 1.0, None)
            for name, start, end in of_size
            if name in merged and layer in merged[name]
        ] + [
            (
                start,
                end,
                layer.lora_A[name].weight,
                layer.lora_B[name].weight,
                layer.scaling[name],
                layer.lora_dropout[name] if layer.lora_dropout[name].training else None,
            )
            for name, start, end in of_size
            if name != BASE and name in layer.lora_A
        ]

    plans = {size: plan(of_size) for size, of_size in runs.items()}

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        steps = plans.get(x.shape[0])
        if steps is None:  # as peft's own check: e.g. OPT's fc1 sees (batch x seq) rows
            raise ValueError(
                "Length of `adapter_names` should be the same as the number of inputs, "
                f"but got {' or '.join(map(str, plans))} and {x.shape[0]} respectively."
            )
        result = layer.base_layer(x, *args, **kwargs)
        for start, end, a, b, scaling, dropout in steps:
            part = x[start:end].to(a.dtype)
            if dropout is not None:
                part = dropout(part)
            result[start:end] += (F.linear(F.linear(part, a), b) * scaling).to(result.dtype)
        return result

    return forward
