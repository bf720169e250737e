"""What loading an adapter did, read from the layers peft injected (CONTRACT section 9).

Rank, alpha and scale come from each injected LoRA layer (`r`, `lora_alpha`, `scaling`),
the modules changed from the layers that hold the adapter. The file's keys that matched
no module come from the library where it says so (transformers' `load_adapter` report);
diffusers drops them silently, so for it the keys of the state dict it loads
(`lora_state_dict`) are set against the layers it injected.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from runner.errors import StepError
from runner.record import adapter_file
from runner.record import manifest as m

SHOWN = 20  # unmatched keys listed; the count says how many there are
CLOSE = 3  # module names offered for an unmatched key
# The tail of a LoRA weight's key after its module's path, in the formats diffusers loads:
# peft (lora_A/lora_B, maybe with an adapter name), diffusers' own (lora.down,
# lora_linear_layer), the old attention processors (processor.to_k_lora) and kohya (.alpha).
_TAIL = re.compile(
    r"(\.lora_[AB](\.[^.]+)?|\.lora(_linear_layer)?\.(down|up)|\.lora_(down|up)|\.lora_magnitude"
    r"_vector(\.[^.]+)?)\.(weight|bias)(\.alpha)?$|\.alpha$"
)
# diffusers' old (attention processor) names: the UNet's to_q .. to_out.0, a text encoder's
# q_proj .. out_proj.
_OLD = re.compile(r"\.(processor\.)?to_(q|k|v|out)_lora\.(down|up)\.weight(\.alpha)?$")


def layers(model: Any, name: str) -> dict[str, Any]:
    """Module path -> the peft layer that holds adapter NAME, in model order."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {
        path: module
        for path, module in model.named_modules()
        if isinstance(module, BaseTunerLayer) and name in (getattr(module, "r", None) or {})
    }


def module_of(key: str) -> str:
    """The module path a LoRA weight's key is for (`a.b.to_q.lora_A.weight` -> `a.b.to_q`)."""
    old = _OLD.sub(_new_name, key)
    return old if old != key else _TAIL.sub("", key)


def _new_name(found: re.Match[str]) -> str:
    which = found.group(2)
    if found.group(1):
        return f".to_{which}" + (".0" if which == "out" else "")
    return f".{which}_proj"


def unmatched_keys(
    components: dict[str, Any], name: str, keys: list[str]
) -> dict[str | None, list[str]]:
    """The KEYS (component-prefixed, as diffusers' `lora_state_dict` gives them) whose module
    holds no layer of adapter NAME, by component (None: a key for no component)."""
    landed = {part: _normalised(layers(model, name)) for part, model in components.items()}
    missed: dict[str | None, list[str]] = {}
    for key in keys:
        part, _, rest = key.partition(".")
        if part not in landed:
            missed.setdefault(None, []).append(key)
        elif _normal(module_of(rest)) not in landed[part]:
            missed.setdefault(part, []).append(key)
    return missed


def _normalised(found: dict[str, Any]) -> set[str]:
    return {_normal(path) for path in found}


def _normal(path: str) -> str:
    # transformers 5 flattens CLIPTextModel (no `text_model.`); older LoRA files keep it.
    return path.removeprefix("text_model.")


def closest(components: dict[str, Any], keys: list[str]) -> list[str]:
    """The model's module names nearest the modules of the first unmatched KEYS."""
    names = {
        f"{part}.{path}" if len(components) > 1 else path: None
        for part, model in components.items()
        for path, _ in model.named_modules()
        if path
    }
    flat = {re.sub(r"[._]", "_", n): n for n in names}
    found: list[str] = []
    for key in keys[:3]:
        wanted = re.sub(r"[._]", "_", module_of(key).removeprefix("lora_"))
        for match in difflib.get_close_matches(wanted, list(flat), n=CLOSE, cutoff=0.5):
            if flat[match] not in found:
                found.append(flat[match])
    return found[:CLOSE]


def no_module_error(components: dict[str, Any], keys: list[str]) -> StepError:
    """A load that matched no module: its first keys and the module names closest to them."""
    near = closest(components, keys)
    return StepError(
        f"matches no module of the model: none of its {len(keys)} keys lands on a layer, "
        f"e.g. {', '.join(keys[:3])}"
        + (f"; the closest module names are {', '.join(near)}" if near else "")
    )


def report(
    components: dict[str, Any],
    name: str,
    missed: dict[str | None, list[str]],
    alpha_source: str,
    file: Path | None,
) -> m.LoadReport:
    """The load report of adapter NAME, once it is loaded into COMPONENTS (name -> module)."""
    parts: dict[str, m.ComponentLoad] = {}
    ranks: list[float] = []
    alphas: list[float] = []
    scales: list[float] = []
    for part, model in components.items():
        found = layers(model, name)
        mine = missed.get(part, [])
        if not found and not mine:
            continue
        for layer in found.values():
            ranks.append(layer.r[name])
            alphas.append(float(layer.lora_alpha[name]))
            scales.append(float(layer.scaling[name]))
        parts[part] = m.ComponentLoad(
            modules=len(found),
            module_names=list(found),
            unmatched_keys=mine[:SHOWN],
            unmatched_count=len(mine),
        )
    every = [key for keys in missed.values() for key in keys]
    meta = adapter_file.metadata(file) if file is not None else {}
    loaded = m.LoadReport(
        modules=sum(p.modules for p in parts.values()),
        components=parts,
        unmatched_keys=every[:SHOWN],
        unmatched_count=len(every),
        rank=_span(ranks, integer=True),
        alpha=_span(alphas),
        alpha_source=alpha_source,
        scale=_span(scales),
        kohya=adapter_file.kohya(meta),
        hashes=adapter_file.hashes(file) if file is not None and file.is_file() else None,
    )
    if every and loaded.modules:
        loaded.warnings.append(
            f"{len(every)} keys match no module, e.g. {', '.join(every[:3])}"
            + (f" (closest: {', '.join(closest(components, every))})" if every else "")
        )
    return loaded


def _span(values: list[float], integer: bool = False) -> Any:
    if not values:
        return None
    low, high = min(values), max(values)
    if low == high:
        return int(low) if integer else round(low, 6)
    return m.Span(min=low, max=high)
