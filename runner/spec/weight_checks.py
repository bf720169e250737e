"""Meaning checks of weights per component and per block (runner.spec.weights): diffusers
only, components that take LoRAs, and blocks only where diffusers can scale them (the UNet:
its block mapping covers UNet models only), naming the pipeline when its folder tells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.sources import folders
from runner.spec.document import Document, Path_
from runner.spec.weights import LORA_COMPONENTS


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
            problems.append(
                doc.problem(
                    where,
                    "weights per component are for diffusers pipelines; a transformers "
                    "adapter takes one number",
                )
            )
            continue
        for component, value in weight.items():
            at = (*where, component)
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
                continue
            problems.append(doc.problem(at, message, key=True))
    return problems


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
