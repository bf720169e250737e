"""Typed spec: frozen dataclasses built from a validated document. No raw dicts past here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Model:
    family: str  # "transformers" | "diffusers"
    path: str  # as written in the spec
    revision: str | None = None
    variant: str | None = None
    trust_remote_code: bool = False
    line: int = 0


@dataclass(frozen=True)
class LoraConfig:
    """A new adapter from a PEFT config; `options` are the LoraConfig keyword arguments."""

    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Adapter:
    name: str
    path: str | None = None  # hub id, local dir or file, or builtin:NAME
    weight_name: str | None = None
    revision: str | None = None
    allow_pickle: bool = False
    config: LoraConfig | None = None
    line: int = 0


@dataclass(frozen=True)
class Load:
    adapters: tuple[str, ...]
    line: int = 0
    id: str | None = None
    op: str = "load"


@dataclass(frozen=True)
class SetAdapters:
    weights: tuple[tuple[str, float], ...]  # (name, weight) in the order written
    line: int = 0
    id: str | None = None
    op: str = "set_adapters"


@dataclass(frozen=True)
class Generate:
    prompts: tuple[str, ...]
    batch: bool  # the prompt was written as a list
    seed: int
    args: dict[str, Any] = field(default_factory=dict)  # family arguments, defaults merged
    line: int = 0
    id: str | None = None
    op: str = "generate"


@dataclass(frozen=True)
class Disable:
    line: int = 0
    id: str | None = None
    op: str = "disable"


@dataclass(frozen=True)
class Enable:
    line: int = 0
    id: str | None = None
    op: str = "enable"


Step = Load | SetAdapters | Generate | Disable | Enable


@dataclass(frozen=True)
class Spec:
    file: Path  # where the spec was read from
    name: str
    version: int
    seed: int
    device: str
    dtype: str
    deterministic: bool
    model: Model
    adapters: dict[str, Adapter]
    steps: tuple[Step, ...]
    description: str = ""
    raw: bytes = b""  # the file's exact bytes

    @property
    def base_dir(self) -> Path:
        """Relative local paths in a spec resolve against the spec's own folder."""
        return self.file.resolve().parent
