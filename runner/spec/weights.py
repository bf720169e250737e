"""An adapter's weight: one number, or diffusers' per-component and per-block mapping.

    0.8                                         every component at 0.8
    {unet: 0.8, text_encoder: 0.3}              per component (a component left out: 1.0)
    {unet: {down: 0.9, mid: 1.0, up: {block_0: 0.6, block_1: [0.4, 0.8, 1.0]}}}
                                                per UNet block; a list: one per layer
    {unet: {preset: MIDD}}                      a LoRA Block Weight preset (SD 1.x UNets:
                                                runner.spec.block_presets)
    {weight: 0.8, steps: [0, 4]}                 for denoising steps 0 to 3 only (`weight`:
                                                any of the above, default 1.0)

These mean what diffusers' `set_adapters(names, adapter_weights=[...])` makes of them. In a
compare row every list sweeps, one row per value (a block's per-layer list is then written
inside a list: `block_1: [[0.4, 0.8, 1.0]]`). Validation, the typed spec, labels and the
record read weights through here; nothing here imports a model library.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from runner.spec.block_presets import PRESET

Weight = float | dict[str, Any]

# How a label names a component: short enough for a grid's row header.
SHORT = {"text_encoder": "te", "text_encoder_2": "te2", "text_encoder_3": "te3"}
SIDES = ("down", "mid", "up")
# A weight for a range of denoising steps: {weight: W, steps: [start, stop]}.
WEIGHT, STEPS = "weight", "steps"
BLOCK_PATTERN = "^block_[0-9]+$"
# The pipeline components diffusers loads LoRA layers into, by the names set_adapters takes.
LORA_COMPONENTS = (
    "unet",
    "transformer",
    "transformer_2",
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
)


def typed(value: Any) -> Any:
    """VALUE with every number a float (a mapping stays a mapping, a list a list), but for
    a step range's two ints and a preset's name."""
    if isinstance(value, dict):
        return {str(k): _typed_entry(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return float(value)


def _typed_entry(key: str, value: Any) -> Any:
    if key == STEPS:
        return [int(s) for s in value]
    return str(value) if key == PRESET else typed(value)


def shaped(weight: Any) -> bool:
    """Whether WEIGHT is a mapping (per component, or with a step range), not one number."""
    return isinstance(weight, dict)


def ranged(weight: Any) -> bool:
    """Whether WEIGHT runs for a range of denoising steps only: `{weight: .., steps: [a, b]}`."""
    return isinstance(weight, dict) and STEPS in weight


def steps_of(weight: Any) -> tuple[int, int] | None:
    """WEIGHT's step range (start, stop: the adapter runs for steps start .. stop - 1)."""
    if not ranged(weight):
        return None
    start, stop = weight[STEPS]
    return int(start), int(stop)


def unranged(weight: Any) -> Any:
    """WEIGHT without its step range: what set_adapters takes while the adapter runs."""
    return weight.get(WEIGHT, 1.0) if ranged(weight) else weight


def _flat(value: Any, prefix: str) -> list[str]:
    if isinstance(value, dict) and PRESET in value:
        return [f"{prefix}={value[PRESET]}"]
    if isinstance(value, dict):
        return [part for k, v in value.items() for part in _flat(v, f"{prefix}.{k}")]
    if isinstance(value, list):
        return [f"{prefix}={'/'.join(f'{float(v):g}' for v in value)}"]
    return [f"{prefix}={float(value):g}"]


def shown(name: str, weight: Any, *, bare_one: bool = True) -> str:
    """`3d`, `3d=0.7`, or per component `3d unet=0.8 te=0.3`, per block
    `cereal unet.down=0.9 unet.up.block_1=0.4/0.8/1` (a list: per layer), a preset
    `cereal unet=MIDD`, with a step range `turbo steps=0:4` (steps 0 to 3)."""
    if ranged(weight):
        start, stop = weight[STEPS]
        return f"{shown(name, unranged(weight), bare_one=bare_one)} steps={start}:{stop}"
    if shaped(weight):
        parts = [p for k, v in weight.items() for p in _flat(v, SHORT.get(k, k))]
        return f"{name} {' '.join(parts)}"
    if bare_one and float(weight) == 1.0:
        return name
    return f"{name}={float(weight):g}"


def written(weight: Any) -> str:
    """WEIGHT in one token of text: a number as Python writes floats, a mapping as JSON."""
    return json.dumps(weight, sort_keys=False) if shaped(weight) else repr(float(weight))


def order_key(weights: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, int, Any], ...]:
    """A sort key for settings that mixes numbers and mappings: numbers first, by value."""
    return tuple(
        (name, 1, json.dumps(w, sort_keys=True)) if shaped(w) else (name, 0, float(w))
        for name, w in weights
    )


def sweep(value: Any, *, layers: bool = False) -> list[Any]:
    """The weights a compare row's VALUE stands for, in order: each list sweeps (the first
    key's values varying slowest); LAYERS: VALUE is a UNet block's, whose items may be
    per-layer lists."""
    if isinstance(value, list):
        return [typed(v) if layers else float(v) for v in value]
    if isinstance(value, dict):
        keys = list(value)
        choices = [_choices(k, value[k]) for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]
    return [float(value)]


def _choices(key: str, value: Any) -> list[Any]:
    if key == STEPS:
        return [[int(s) for s in value]]
    if key == PRESET:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return sweep(value, layers=_is_block(key))


def sweep_count(value: Any, cap: int) -> int:
    """How many weights `sweep(VALUE)` gives, stopping past CAP."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        total = 1
        for k, v in value.items():
            total *= 1 if k == STEPS else sweep_count(v, cap)
            if total > cap:
                return cap + 1
        return total
    return 1


def _is_block(key: str) -> bool:
    return key.startswith("block_")
