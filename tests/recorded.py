"""A run directory as the runner writes it, from hand-made results (no model): the report
page's fixture for the unit tier and the browser tests alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

import runner
from runner.record import manifest as m
from runner.record.recorder import Recorder
from runner.results import Completion, GeneratedImage
from runner.running.cellwriter import CellWriter
from runner.running.ending import finish

HOSTILE = "<script>alert('x')</script> & \"quotes\" <img src=https://evil.example/x.png>"

SPEC = {
    "version": 1,
    "name": "report-page",
    "description": "desc " + HOSTILE,
    "device": "cpu",
    "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
    "adapters": {"a": {"path": "builtin:tiny-sd-lora-a"}},
    "steps": [
        {"op": "load", "adapters": "a"},
        {"op": "generate", "id": "pics", "prompt": ["red", HOSTILE], "seed": 4},
        {"op": "compare", "id": "grid", "adapters": ["base", "a"], "prompt": ["red", HOSTILE]},
        {"op": "generate", "id": "words", "prompt": "x"},
    ],
}


def _image(seed: int, size: int = 48) -> Image.Image:
    import random

    rng = random.Random(seed)
    return Image.frombytes(
        "RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3))
    )


def _step(index: int, op: str, id_: str | None, **kwargs: Any) -> m.StepRecord:
    return m.StepRecord(
        index=index, op=op, id=id_, line=10 + index, status="ok", seconds=0.25, **kwargs
    )


def record(out: Path, status: str = "succeeded") -> Path:
    """A run directory as the runner writes it, from hand-made results (no model)."""
    spec = runner.load_spec(SPEC)
    rec = Recorder.start(out, spec)
    settings = m.Settings("cpu", "Test CPU", "float32", 0, 2, {"threads": 2})
    model = m.Identity("builtin:tiny-sd", files={"unet/model.safetensors": "ab" * 32})
    rec.prepared({"libraries": {"torch": "2.13.0"}, "python": "3.11"}, settings, model)
    rec.manifest.inputs.adapters["a"] = m.Identity(
        "builtin:tiny-sd-lora-a", revision="c" * 40, files={"lora.safetensors": "cd" * 32}
    )
    rec.step(_step(1, "load", None, arguments={"adapters": ["a"]}, active_adapters={"a": 1.0}))
    pictures = [GeneratedImage(_image(k), p, 4 + k) for k, p in enumerate(["red", HOSTILE])]
    outputs = rec.outputs("outputs/02-pics", pictures, {"a": 1.0})
    args = {"prompt": ["red", HOSTILE], "seed": 4}
    rec.step(
        _step(2, "generate", "pics", arguments=args, active_adapters={"a": 1.0}, outputs=outputs)
    )
    writer = CellWriter(rec, "outputs/03-grid", ["base", "a"])
    for r, adapters in enumerate([None, {"a": 1.0}]):
        for k, prompt in enumerate(["red", HOSTILE]):
            writer.add(r, adapters, [GeneratedImage(_image(10 * r + k), prompt, 0)])
    written, cells = writer.close()
    args = {"rows": ["base", "a"], "adapters": [None, {"a": 1.0}], "prompt": ["red", HOSTILE]}
    execution = {"executor": "one_by_one", "cells": cells}
    rec.step(
        _step(3, "compare", "grid", arguments=args, active_adapters={"a": 1.0}, outputs=written)
    )
    rec.manifest.steps[-1].execution = execution
    if status == "succeeded":
        texts = [Completion(HOSTILE, " and " + HOSTILE, [5, 6, 7], 0)]
        outputs = rec.outputs("outputs/04-words", texts, None)
        rec.step(_step(4, "generate", "words", arguments={"prompt": ["x"]}, outputs=outputs))
        finish(rec, "succeeded")
    else:
        rec.step(m.StepRecord(4, "generate", 14, status, 0.5, id="words"))
        why = "interrupted" if status == "interrupted" else "RuntimeError: out of memory <b>"
        finish(rec, status, m.Failure(4, "spec.yaml:14: step 4 (generate)", why))
    return rec.run
