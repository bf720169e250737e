"""What a builtin is: its kind, family and maker. Makers write files into an empty folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PREFIX = "builtin:"


@dataclass(frozen=True)
class Builtin:
    kind: str  # "model" | "adapter" | "clip" (a compare's clip_score model)
    family: str  # "transformers" | "diffusers"
    make: Callable[[Path, Path | None], None]  # (empty folder, the base builtin's folder)
    peft_type: str | None = None  # adapters: "lora"
    base: str | None = None  # adapters: the builtin model they fit
