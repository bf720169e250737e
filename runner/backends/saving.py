"""One loaded adapter as files, in the format its family's loaders read, as bytes.

The state dicts are peft's (`get_peft_model_state_dict`); the files are what
`PeftModel.save_pretrained`, a pipeline's `save_lora_weights` and diffusers'
`convert_state_dict_to_kohya` write. The caller writes the bytes into the run directory,
so a file appears whole or not at all. Sets in a config (target_modules) are written
sorted: peft and diffusers write them in hash order, which changes from one process to
the next, and the same adapter must give the same bytes.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch

from runner.errors import StepError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' default weight name
# The components diffusers' kohya converter names (lora_unet_*, lora_te1_*, lora_te2_*).
KOHYA_PARTS = ("unet", "text_encoder", "text_encoder_2")


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _plain(value: Any) -> Any:
    """VALUE with every set a sorted list, nested mappings included."""
    if isinstance(value, set):
        return sorted(value, key=str)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def peft_folder(model: Any, name: str, base: str) -> dict[str, bytes]:
    """A PEFT adapter folder, as `PeftModel.save_pretrained` writes it for adapter NAME of
    MODEL (BASE: the base model's name, for adapter_config.json)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    state = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
    weights = save(
        {f"base_model.model.{k}": v for k, v in _tensors(state).items()}, metadata={"format": "pt"}
    )
    config = copy.deepcopy(model.peft_config[name])
    config.inference_mode = True
    config.base_model_name_or_path = base
    for key, value in vars(config).items():
        setattr(config, key, _plain(value))
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        written = (Path(folder) / PEFT_CONFIG).read_bytes()
    return {PEFT_CONFIG: written, PEFT_WEIGHTS: weights}


def components(pipe: Any, name: str) -> dict[str, Any]:
    """The pipeline's modules that hold adapter NAME, by component name."""
    return {
        part: module
        for part, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        and name in (getattr(module, "peft_config", None) or {})
    }


def diffusers_file(pipe: Any, name: str) -> dict[str, bytes]:
    """A diffusers LoRA file, as the pipeline's `save_lora_weights` writes it, each
    component's LoraConfig in its metadata (so that alpha loads back as it ran)."""
    import inspect

    from peft.utils import get_peft_model_state_dict

    held = components(pipe, name)
    accepted = inspect.signature(type(pipe).save_lora_weights).parameters
    kwargs: dict[str, Any] = {}
    for part, module in held.items():
        if f"{part}_lora_layers" not in accepted:
            raise StepError(f"{type(pipe).__name__} cannot save LoRA layers of its {part}")
        state = get_peft_model_state_dict(module, adapter_name=name)
        kwargs[f"{part}_lora_layers"] = _tensors(state)
        if f"{part}_lora_adapter_metadata" in accepted:
            kwargs[f"{part}_lora_adapter_metadata"] = _plain(module.peft_config[name].to_dict())
    with tempfile.TemporaryDirectory() as folder:
        type(pipe).save_lora_weights(folder, weight_name=LORA_WEIGHTS, **kwargs)
        return {LORA_WEIGHTS: (Path(folder) / LORA_WEIGHTS).read_bytes()}


def kohya_file(pipe: Any, name: str) -> dict[str, bytes]:
    """A kohya LoRA file (lora_unet_*, lora_te1_*, lora_te2_*), through diffusers'
    `convert_state_dict_to_kohya`. That converter writes alpha = rank, so each layer's own
    alpha / r is folded into its up weights first: the file runs as the adapter did."""
    from diffusers.utils import convert_state_dict_to_kohya
    from peft.tuners.lora import LoraLayer
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save

    from runner.backends.lora_mixing import initial_scale

    merged: dict[str, torch.Tensor] = {}
    for part, module in components(pipe, name).items():
        if part not in KOHYA_PARTS:
            raise StepError(f"the kohya format has no keys for a pipeline's {part}")
        state = _tensors(get_peft_model_state_dict(module, adapter_name=name))
        for path, layer in module.named_modules():
            key = f"{path}.lora_B.weight"
            if isinstance(layer, LoraLayer) and name in layer.lora_A and key in state:
                state[key] = state[key] * initial_scale(layer, name)
        merged.update({f"{part}.{k}": v for k, v in state.items()})
    return {f"{name}.safetensors": save(convert_state_dict_to_kohya(merged))}
