"""The seam between the interpreter and the model libraries: one backend per family.

Only backends import torch, transformers, diffusers or peft, and only they know how
each library spells an adapter operation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runner.backends.results import Completion, Picture

if TYPE_CHECKING:
    from runner.spec.types import Adapter, Generate, Model


class Backend(Protocol):
    """What the interpreter asks of a model family. Adapter bookkeeping is the interpreter's."""

    device: str  # resolved, e.g. "cpu", "cuda:0"
    dtype: str  # resolved, e.g. "float32"

    def load_model(self, model: Model, source: str) -> None:
        """Load the base model from SOURCE: a resolved local folder, or a hub id."""

    def load_adapter(self, adapter: Adapter, local: Path | None) -> None:
        """Attach one adapter under its name and make it the only active one.

        `local` is the resolved local file or folder (None for a hub id, or a config adapter).
        On failure nothing of the adapter stays behind.
        """

    def set_adapters(self, weights: dict[str, float]) -> None:
        """Make exactly these adapters active, each scaled by its weight."""

    def disable(self) -> None:
        """Run the base model from now on; adapters stay loaded."""

    def enable(self) -> None:
        """Run the active adapters again."""

    def generate(self, step: Generate) -> list[Completion] | list[Picture]:
        """Generate for every prompt of the step, seeded as the contract says."""

    def unload_adapters(self) -> None:
        """Remove every adapter, so that the model computes exactly what a fresh load does."""


def create_backend(family: str, device: str, dtype: str, trust_remote_code: bool) -> Backend:
    """The backend for FAMILY; importing it is what loads the heavy libraries."""
    if family == "transformers":
        from runner.backends.transformers_backend import TransformersBackend

        return TransformersBackend(device, dtype, trust_remote_code)
    from runner.backends.diffusers_backend import DiffusersBackend

    return DiffusersBackend(device, dtype, trust_remote_code)


def resolve(device: str, dtype: str) -> tuple[str, str]:
    """The device and dtype a backend would run with (`auto` resolved); imports torch."""
    from runner.backends.devices import resolve_device, resolve_dtype

    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)
