"""Quantized bases through bitsandbytes: transformers' BitsAndBytesConfig and diffusers'
PipelineQuantizationConfig built from the spec's model.quantization."""

from __future__ import annotations

import importlib.util
from typing import Any

from runner.backends.devices import torch_dtype
from runner.errors import StepError
from runner.spec.types import Quantization

MISSING = "model.quantization needs bitsandbytes: pip install 'peft-runner[quant]'"


def _arguments(q: Quantization, dtype: str, prefix: str) -> dict[str, Any]:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise StepError(MISSING)
    if q.bits == 8:
        return {"load_in_8bit": True}
    return {
        "load_in_4bit": True,
        f"{prefix}quant_type": q.quant_type or "nf4",
        f"{prefix}compute_dtype": torch_dtype(q.compute_dtype or dtype),
    }


def transformers_config(q: Quantization, dtype: str) -> Any:
    """BitsAndBytesConfig(load_in_4bit=..., bnb_4bit_quant_type=..., ...) for from_pretrained."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**_arguments(q, dtype, "bnb_4bit_"))


def diffusers_config(q: Quantization, dtype: str, denoiser: str) -> Any:
    """PipelineQuantizationConfig of bitsandbytes for the components named (default: the
    denoiser)."""
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend=f"bitsandbytes_{q.bits}bit",
        quant_kwargs=_arguments(q, dtype, "bnb_4bit_"),
        components_to_quantize=list(q.components or (denoiser,)),
    )
