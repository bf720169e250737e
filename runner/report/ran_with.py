"""A generating step's settings as its section shows them: what the step wrote, the
defaults filled in (the backend's, recorded with the step; an image's, read from its PNG)
and where its seed came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import RunDirError
from runner.record import layout
from runner.record import manifest as m
from runner.record.trust import run_file
from runner.report.markup import e

_SHOWN_ELSEWHERE = ("prompt", "seed", "rows", "adapters")
# PNG text chunk -> the generate argument it records
_FROM_PNG = {
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "size": "size",
    "scheduler": "scheduler",
    "lora_scale": "lora_scale",
}
_SEED_FROM = {
    "step": "the step's own",
    "defaults": "from defaults.generate",
    "spec": "the spec's seed (the step sets none)",
}


def ran_with(run_dir: Path, step: m.StepRecord) -> str:
    """'ran with: ...' for a generate or compare step; '' for other steps."""
    if step.op not in ("generate", "compare"):
        return ""
    settings = settings_of(run_dir, step)
    parts = [f"{e(k)} <code>{e(_value(v))}</code>" for k, v in settings.items()]
    parts.append(_seed(step))
    shown = " &middot; ".join(p for p in parts if p)
    return f"<p class=ran>ran with: {shown}</p>" if shown else ""


def settings_of(run_dir: Path, step: m.StepRecord) -> dict[str, Any]:
    """The step's arguments after defaults: written ones, then the recorded backend
    settings, then what its first image records (seed, prompt and rows shown elsewhere)."""
    out = {k: v for k, v in step.arguments.items() if k not in _SHOWN_ELSEWHERE}
    recorded = step.execution.get("settings")
    if isinstance(recorded, dict):
        out.update({k: v for k, v in recorded.items() if k not in out})
    png = _first_png(step)
    if png is not None:
        out.update(_png_settings(run_dir, png, out))
    if "size" in out:
        out.pop("width", None), out.pop("height", None)
    return out


def _first_png(step: m.StepRecord) -> str | None:
    pngs = [o.path for o in step.outputs if o.path.endswith(".png")]
    pngs = [p for p in pngs if not p.endswith("/" + layout.GRID)]
    return pngs[0] if pngs else None


def _png_settings(run_dir: Path, rel: str, written: dict[str, Any]) -> dict[str, Any]:
    from runner.record.pnginfo import read_png_metadata

    try:
        text = read_png_metadata(run_file(run_dir, rel))
    except (OSError, ValueError, RunDirError):
        return {}
    found: dict[str, Any] = {}
    for chunk, key in _FROM_PNG.items():
        value = text.get(chunk)
        if value in (None, "", "None", "NonexNone"):
            continue
        if key == "scheduler" and key in written:  # what the spec wrote, and the class it made
            found[key] = f"{_value(written[key])} -> {value}"
        elif key not in written:
            found[key] = value
    return found


def _seed(step: m.StepRecord) -> str:
    seed = step.arguments.get("seed")
    if seed is None:
        return ""
    where = _SEED_FROM.get(str(step.execution.get("seed_from")), "")
    label = "seeds" if isinstance(seed, list) else "seed"
    pngs = [o for o in step.outputs if o.path.endswith(".png")]
    if step.op == "generate" and len(pngs) > 1:
        where = "; ".join(filter(None, [where, "image k of the step draws from seed + k"]))
    return f"{label} <code>{e(_value(seed))}</code>" + (f" ({e(where)})" if where else "")


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
