"""The hashes an image's infotext names, as A1111 and civitai read them (CONTRACT section 9),
taken from what the run recorded: the model's files and each adapter's load report.

`Model hash` is AUTOV2 (the first 10 hex of sha256) of the model's single checkpoint file,
or, for a folder of components, of the denoiser's weight file (unet/ or transformer/,
safetensors before other formats); `Model` is the name A1111 would show: the checkpoint's
file stem, or the last part of the model's path.
"""

from __future__ import annotations

import re

from runner.record import manifest as m
from runner.record.pnginfo import Hashes

WEIGHTS = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")
DENOISERS = ("unet/", "transformer/")


def hashes(manifest: m.Manifest) -> Hashes:
    """The model's name and AUTOV2 and every loaded adapter's AUTOV2 and AUTOV3."""
    model = manifest.inputs.model
    name, model_hash = (None, None) if model is None else _model(model)
    adapters = {}
    for adapter, record in manifest.adapters.items():
        found = record.load.hashes if record.load is not None else None
        if found is not None:
            adapters[adapter] = (found.autov2, found.autov3)
    return Hashes(model=name, model_hash=model_hash, adapters=adapters)


def _model(model: m.Identity) -> tuple[str | None, str | None]:
    weights = sorted(
        (p for p in model.files if p.endswith(WEIGHTS)),
        key=lambda p: (not p.endswith(".safetensors"), p),
    )
    if len(weights) == 1 and "/" not in weights[0]:  # a single checkpoint file
        return weights[0].rsplit(".", 1)[0], _v2(model.files[weights[0]])
    tail = re.split(r"[/:\\]", (model.path or "").rstrip("/"))[-1] or None
    denoiser = next((p for p in weights if p.startswith(DENOISERS)), None)
    return tail, None if denoiser is None else _v2(model.files[denoiser])


def _v2(sha256: str) -> str:
    return sha256[:10]
