"""The base weights under the LoRA layers: their hash, and a copy kept while fused.

Fusing adds each adapter's change into its base layer's weights; unfusing subtracts it, and
in floating point (W + d) - d is W only up to rounding. So `fuse` keeps a copy (on the CPU)
of every weight it may change, `unfuse` lets the library take the change out, measures how
far its result drifted, puts the copy back, and checks the hash recorded at `fuse`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from runner.errors import StepError


def base_weights(modules: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter of the base layer of each LoRA-wrapped module."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for part, model in sorted(modules.items()):
        if not isinstance(model, torch.nn.Module):
            continue
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer):
                base = module.get_base_layer()
                for key, tensor in base.named_parameters(recurse=False):
                    yield f"{part}.{name}.{key}", tensor


def digest(modules: dict[str, Any]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of those weights, in a fixed order."""
    hashed = hashlib.sha256()
    for name, tensor in base_weights(modules):
        data = tensor.detach().to("cpu").contiguous()
        hashed.update(f"{name}\0{data.dtype}\0{tuple(data.shape)}\0".encode())
        hashed.update(data.view(torch.uint8).numpy().tobytes())
    return hashed.hexdigest()


@dataclass
class Kept:
    """The base weights as they were before a fuse: their hash and a copy of each."""

    sha256: str
    copies: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def before_fuse(cls, modules: dict[str, Any]) -> Kept:
        copies = {name: t.detach().to("cpu", copy=True) for name, t in base_weights(modules)}
        return cls(digest(modules), copies)

    def put_back(self, modules: dict[str, Any]) -> dict[str, Any]:
        """Every weight back from the copy, checked against the hash; returns what the
        library's own unfuse had left (the largest difference, how many weights differed)."""
        drift, differed = 0.0, 0
        with torch.no_grad():
            for name, tensor in base_weights(modules):
                kept = self.copies.get(name)
                if kept is None or kept.shape != tensor.shape:
                    raise StepError(f"unfuse: base weight {name} was not there at fuse")
                delta = (tensor.detach().to("cpu", torch.float64) - kept.to(torch.float64)).abs()
                if delta.numel() and float(delta.max()) > 0:
                    drift, differed = max(drift, float(delta.max())), differed + 1
                tensor.copy_(kept.to(tensor.device))
        after = digest(modules)
        if after != self.sha256:
            raise StepError(
                f"unfuse: the base weights are not bit-identical to those before fuse "
                f"(sha256 {after[:12]}..., was {self.sha256[:12]}...)"
            )
        return {"library_unfuse_max_abs_drift": drift, "weights_restored_from_copy": differed}
