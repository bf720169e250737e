"""Several LoRA settings in one batch: peft's `adapter_names`, one adapter per batch row.

transformers' PEFT integration has no PeftModel to pass `adapter_names` through `generate`,
so a forward pre-hook on every LoRA layer hands it in, as peft's own
`LoraModel._enable_peft_forward_hooks` does. A row of several adapters is not one adapter:
`merge` makes it one, peft's `add_weighted_adapter(combination_type="cat")` written for a
model without a PeftModel: A stacked, B side by side, each B scaled by its weight and its
own alpha / r, so the merged delta is sum of weight x delta.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

BASE = "__base__"  # peft's name for "no adapter" in adapter_names
TEMPORARY = "__compare_"  # the prefix of merged adapters; deleted at the end of the step
MAX_MERGED_RANK = 512  # a larger cat rank costs more than a batch of its own row saves


def lora_layers(model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def plain(model: Any, names: list[str]) -> bool:
    """Whether every adapter is a vanilla, unmerged LoRA peft can mix (no DoRA, no variant)."""
    configs = getattr(model, "peft_config", None) or {}
    for name in names:
        config = configs.get(name)
        if config is None or str(getattr(config, "peft_type", "")) not in ("LORA", "PeftType.LORA"):
            return False
        if getattr(config, "use_dora", False) or getattr(config, "lora_bias", False):
            return False
    for _, layer in lora_layers(model):
        if getattr(layer, "merged_adapters", None):
            return False
        if any(n in getattr(layer, "lora_variant", {}) for n in names):
            return False
    return True


def mergeable(model: Any, names: list[str]) -> bool:
    """Whether `merge` can make one adapter of these: Linear LoRA layers only, a sane rank."""
    from peft.tuners.lora.layer import Linear

    total = 0
    for _, layer in lora_layers(model):
        used = [n for n in names if n in layer.lora_A or n in layer.lora_embedding_A]
        if not used:
            continue
        if not isinstance(layer, Linear) or getattr(layer, "fan_in_fan_out", False):
            return False
        total = max(total, sum(layer.r[n] for n in used))
    return 0 < total <= MAX_MERGED_RANK


def merge(model: Any, name: str, weights: dict[str, float]) -> None:
    """Add adapter NAME = sum of weight x delta of each adapter in WEIGHTS, at scale 1."""
    from peft import LoraConfig

    layers = [(n, m) for n, m in lora_layers(model) if any(a in m.lora_A for a in weights)]
    ranks = {a: max(m.r[a] for _, m in layers if a in m.lora_A) for a in weights}
    total = sum(ranks.values())
    config = LoraConfig(
        r=total,
        lora_alpha=total,  # alpha / r = 1: the weights and alphas are in B already
        target_modules=[n for n, _ in layers],
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    model.add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for _, layer in layers:
            a_parts, b_parts = [], []
            for adapter, weight in weights.items():
                if adapter in layer.lora_A:
                    base_scale = _initial_scale(layer, adapter)
                    a_parts.append(layer.lora_A[adapter].weight)
                    b_parts.append(layer.lora_B[adapter].weight * (weight * base_scale))
                else:  # an adapter that leaves this layer alone: zero rows and columns
                    out_f, in_f = layer.out_features, layer.in_features
                    a_parts.append(layer.lora_A[name].weight.new_zeros(ranks[adapter], in_f))
                    b_parts.append(layer.lora_B[name].weight.new_zeros(out_f, ranks[adapter]))
            layer.lora_A[name].weight.copy_(torch.cat(a_parts, dim=0))
            layer.lora_B[name].weight.copy_(torch.cat(b_parts, dim=1))
            layer.set_scale(name, 1.0)
    model.eval()


def _initial_scale(layer: Any, adapter: str) -> float:
    """ADAPTER's scaling at weight 1 in LAYER, as set_scale computes it: alpha / r."""
    import math

    r, alpha = layer.r[adapter], layer.lora_alpha[adapter]
    return float(alpha / math.sqrt(r) if layer.use_rslora.get(adapter, False) else alpha / r)


def set_scales(model: Any, scales: dict[str, float]) -> None:
    for _, layer in lora_layers(model):
        for name, scale in scales.items():
            layer.set_scale(name, scale)


@contextmanager
def adapter_names(model: Any, names: list[str]) -> Iterator[None]:
    """Every LoRA layer's forward runs row i of the batch with adapter NAMES[i]."""

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        kwargs["adapter_names"] = names
        return args, kwargs

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for _, m in lora_layers(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
