"""Meaning checks of weights per component, per block and per step range
(runner.spec.weights): diffusers only, components that take LoRAs, blocks only where
diffusers can scale them (the UNet: its block mapping covers UNet models only), naming the
pipeline when its folder tells, presets that exist, alone, on a UNet of SD 1.x's layout,
and ranges that start below their stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.sources import folders
from runner.spec import block_presets
from runner.spec.document import Document, Path_
from runner.spec.values import is_int
from runner.spec.weights import LORA_COMPONENTS, STEPS, WEIGHT


def weight_problems(
    doc: Document, steps: list[Any], model: dict[str, Any], base_dir: Path
) -> list[Located]:
    """Every weight written per component, in set_adapters steps and compare (and score)
    rows."""
    found = list(_shaped_weights(steps))
    if not found:
        return []
    family = model.get("family")
    path = model.get("path")
    local = folders.on_disk(path, base_dir) if isinstance(path, str) else None
    index = folders.pipeline_index(local)
    problems = []
    for where, weight in found:
        if family != "diffusers":
            problems.append(doc.problem(where, _REFUSED[STEPS in weight]))
            continue
        ranging = _range_problem(weight)
        if ranging is not None:
            problems.append(doc.problem((*where, ranging[0]), ranging[1]))
            continue
        inner = weight.get(WEIGHT) if STEPS in weight else weight
        at_inner = (*where, WEIGHT) if STEPS in weight else where
        for component, value in inner.items() if isinstance(inner, dict) else ():
            at = (*at_inner, component)
            if component not in LORA_COMPONENTS:
                continue  # the schema names the components it takes
            if index is not None and component not in index.components:
                message = (
                    f"{index.pipeline} has no component '{component}'; its components: "
                    f"{', '.join(index.components)}"
                )
            elif isinstance(value, dict) and component != "unet":
                message = (
                    f"per-block weights are for the unet only (diffusers' block mapping covers "
                    f"UNet models only), not for {component}"
                )
            else:
                if isinstance(value, dict) and block_presets.PRESET in value:
                    named = index.pipeline if index else "the pipeline"
                    problems += _preset_problems(
                        doc, (*at, block_presets.PRESET), value, local, named
                    )
                continue
            problems.append(doc.problem(at, message, key=True))
    return problems


def _preset_problems(
    doc: Document, at: Path_, unet: dict[str, Any], local: Path | None, pipeline: str
) -> list[Located]:
    """A preset stands alone in the unet's mapping, is one of the table's, and the
    pipeline's UNet (where its folder is on disk) has SD 1.x's layout."""
    if len(unet) > 1:
        others = ", ".join(k for k in unet if k != block_presets.PRESET)
        return [doc.problem(at, f"a preset stands alone: write the preset or {others}", key=True)]
    written = unet[block_presets.PRESET]
    names = written if isinstance(written, list) else [written]
    for name in names:
        if isinstance(name, str) and (why := block_presets.unknown(name)):
            return [doc.problem(at, why)]
    config = _unet_config(local)
    why = None if config is None else block_presets.layout_problem(pipeline, config)
    return [] if why is None else [doc.problem(at, why)]


def _unet_config(local: Path | None) -> dict[str, Any] | None:
    """The pipeline folder's unet/config.json, or None where it cannot tell."""
    try:
        config = json.loads((local / "unet" / "config.json").read_bytes()) if local else None
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


_REFUSED = {
    False: "weights per component are for diffusers pipelines; a transformers adapter takes "
    "one number",
    True: "step ranges (steps: [start, stop]) count a diffusers pipeline's denoising steps; "
    "a transformers adapter takes one number",
}


def _range_problem(weight: dict[str, Any]) -> tuple[str, str] | None:
    """(key, why) a weight's step range is wrong, or None."""
    if WEIGHT in weight and STEPS not in weight:
        return WEIGHT, "weight: goes with steps: [start, stop]; without a range write the weight"
    if STEPS not in weight:
        return None
    if len(weight) > 2 or (len(weight) == 2 and WEIGHT not in weight):
        return STEPS, (
            "with steps, write the components inside weight: "
            "{weight: {unet: .., text_encoder: ..}, steps: [start, stop]}"
        )
    written = weight[STEPS]
    if not (isinstance(written, list) and len(written) == 2 and all(map(is_int, written))):
        return None  # the schema says what is wrong with it
    start, stop = written
    if start >= stop:
        return STEPS, (
            f"steps [{start}, {stop}]: the start must be below the stop (the adapter runs "
            f"for steps start to stop - 1)"
        )
    return None


def _shaped_weights(steps: list[Any]) -> list[tuple[Path_, dict[str, Any]]]:
    out: list[tuple[Path_, dict[str, Any]]] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("adapters"), (dict, list)):
            continue
        here: Path_ = ("steps", index, "adapters")
        if step.get("op") == "set_adapters" and isinstance(step["adapters"], dict):
            mappings = [(here, step["adapters"])]
        elif step.get("op") in ("compare", "score") and isinstance(step["adapters"], list):
            mappings = [
                ((*here, j), r) for j, r in enumerate(step["adapters"]) if isinstance(r, dict)
            ]
        else:
            continue
        for at, mapping in mappings:
            out += [((*at, name), w) for name, w in mapping.items() if isinstance(w, dict)]
    return out
