"""LoRA Block Weight presets by name, as diffusers' per-block mapping: `{unet: {preset: MIDD}}`.

The presets are the 17-value lines of the AUTOMATIC1111 extension LoRA Block Weight
(hako-mikan/sd-webui-lora-block-weight, `DEF_WEIGHT_PRESET` in scripts/lora_block_weight.py
at b403cb7, 2025-06-19), for SD 1.x LoRAs, in its block order `BLOCKID17`:

    BASE                    the text encoder
    IN01 IN02               down_blocks.0.attentions.0, .1   (LDM input_blocks.1, .2)
    IN04 IN05               down_blocks.1.attentions.0, .1   (input_blocks.4, .5)
    IN07 IN08               down_blocks.2.attentions.0, .1   (input_blocks.7, .8)
    M00                     mid_block                        (middle_block)
    OUT03 OUT04 OUT05       up_blocks.1.attentions.0, .1, .2 (output_blocks.3 .. 5)
    OUT06 OUT07 OUT08       up_blocks.2.attentions.0, .1, .2
    OUT09 OUT10 OUT11       up_blocks.3.attentions.0, .1, .2

The extension has no preset of SDXL's 12 blocks (its SDXL lines are the user's own), so
presets are for UNets of SD 1.x's layout only. Nothing here imports a model library.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

PRESET = "preset"
TEXT_ENCODER = "text_encoder"
ORDER = (
    "BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
    "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11",
)  # fmt: skip
# The extension's lines, name: values in ORDER (its FLUXALL line is for Flux's 61 blocks).
PRESETS: dict[str, tuple[float, ...]] = {
    "NONE": (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "ALL": (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    "INS": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "IND": (1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "INALL": (1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "MIDD": (1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0),
    "OUTD": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0),
    "OUTS": (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1),
    "OUTALL": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    "ALL0.5": (0.5,) * 17,
}
# SD 1.x's UNet as diffusers builds it: attention in down blocks 0-2 (two layers each), the
# mid block, and up blocks 1-3 (three layers each).
SD1_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD1_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
SD1_MID = "UNetMidBlock2DCrossAttn"
SD1_LAYERS = 2


def blocks(name: str) -> dict[str, Any]:
    """Preset NAME as diffusers' mapping: {text_encoder: BASE, unet: {down, mid, up}}."""
    v = [float(x) for x in PRESETS[name]]
    down = {f"block_{i}": v[1 + 2 * i : 3 + 2 * i] for i in range(3)}
    up = {f"block_{i + 1}": v[8 + 3 * i : 11 + 3 * i] for i in range(3)}
    return {TEXT_ENCODER: v[0], "unet": {"down": down, "mid": v[7], "up": up}}


def named(weight: Any) -> str | None:
    """The preset a weight's unet names, or None."""
    unet = weight.get("unet") if isinstance(weight, dict) else None
    return unet.get(PRESET) if isinstance(unet, dict) else None


def expanded(weight: Any, text_encoder: bool) -> Any:
    """WEIGHT with its preset written out; BASE goes to the text encoder where the adapter
    has layers there (TEXT_ENCODER) and the weight sets no text_encoder of its own."""
    name = named(weight)
    if name is None:
        return weight
    mapping = blocks(name)
    base = {TEXT_ENCODER: mapping[TEXT_ENCODER]} if text_encoder else {}
    return {**base, **weight, "unet": mapping["unet"]}


def unknown(name: str) -> str | None:
    """Why NAME is no preset, with the nearest one; None for a preset."""
    if name in PRESETS:
        return None
    upper = {key.upper(): key for key in PRESETS}
    near = difflib.get_close_matches(name.upper(), list(upper), n=1)
    hint = f"did you mean {upper[near[0]]}? " if near else ""
    return f"unknown block weight preset '{name}'; {hint}presets: {', '.join(PRESETS)}"


def layout_problem(pipeline: str, config: Mapping[str, Any]) -> str | None:
    """Why a UNet of CONFIG (its config.json) cannot take a preset: not SD 1.x's layout."""
    down = tuple(config.get("down_block_types") or ())
    up = tuple(config.get("up_block_types") or ())
    mid = config.get("mid_block_type", SD1_MID)
    layers = config.get("layers_per_block")
    if (down, up, mid, layers) == (SD1_DOWN, SD1_UP, SD1_MID, SD1_LAYERS):
        return None
    return (
        f"block weight presets are for SD 1.x UNets (down blocks {', '.join(SD1_DOWN)}, "
        f"{SD1_LAYERS} layers each); {pipeline}'s unet has down blocks "
        f"{', '.join(down) or 'none'}, {layers} layers each"
    )
