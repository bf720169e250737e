"""Device and dtype resolution shared by the backends (imports torch)."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """auto: cuda, else mps, else cpu; a bare `cuda` becomes `cuda:0`."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda":
        return "cuda:0"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """auto: float16 on cuda and mps, float32 on cpu."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "float16"


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
