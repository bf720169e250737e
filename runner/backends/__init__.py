"""The seam between the interpreter and the model libraries: one backend per family.

Only backends import torch, transformers, diffusers or peft, and only they know how
each library spells an adapter operation. What they share is in `base`; this module
makes one, importing it (and its libraries) only when asked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.backends.base import Backend, Ticker

# family -> (module, class): imported by name when asked, so that this package imports no
# backend while both backends import runner.backends.base.
BACKENDS = {
    "transformers": ("runner.backends.transformers_backend", "TransformersBackend"),
    "diffusers": ("runner.backends.diffusers_backend", "DiffusersBackend"),
}


def prepare_libraries(family: str, ticker: Ticker | None = None) -> None:
    """Before anything of FAMILY's libraries runs, a builtin model's making included: a broken
    pair of library versions is refused in one line, and (unless the ticker is verbose)
    the libraries' own progress bars and logs are turned off."""
    from runner.backends import compat

    versions = compat.installed()
    compat.check(versions)  # before an import fails on a known pair
    compat.check(versions, peft_needed=_peft_needed())
    if ticker is None or not ticker.verbose:
        from runner.backends.quiet import silence

        silence(family)


def create_backend(
    family: str, device: str, dtype: str, trust_remote_code: bool, ticker: Ticker | None = None
) -> Backend:
    """The backend for FAMILY, once `prepare_libraries` has run; importing it is what loads
    the heavy libraries."""
    module, name = BACKENDS[family]
    made: Backend = getattr(importlib.import_module(module), name)(
        device, dtype, trust_remote_code, ticker
    )
    return made


def _peft_needed() -> str | None:
    """The oldest peft the installed transformers accepts, as it declares it itself."""
    try:
        from transformers.integrations import peft
    except ImportError:
        return None
    needed = getattr(peft, "MIN_PEFT_VERSION", None)
    return needed if isinstance(needed, str) else None


def resolve(device: str, dtype: str) -> tuple[str, str]:
    """The device and dtype a backend would run with (`auto` resolved); imports torch."""
    from runner.backends.devices import resolve_device, resolve_dtype

    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)
