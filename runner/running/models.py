"""Base models kept loaded between runs: the next spec on the same model starts from it.

A model is shared by specs that agree on its family, path, revision, variant, remote
code, scheduler, components left out, attention implementation, device and dtype.
Between two runs every adapter is removed (`unload_adapters`), which gives back a model
computing exactly what a fresh load computes; a model whose adapters could not be removed
is dropped, and the next run loads it afresh. One model is kept at a time: two large
models rarely fit one GPU together.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from runner.backends import create_backend, prepare_libraries, resolve
from runner.backends.base import Backend, Ticker
from runner.record import manifest as m
from runner.sources import folders, hub
from runner.spec.types import Spec

Key = tuple[object, ...]


def model_key(spec: Spec, device: str, dtype: str) -> Key:
    """What makes two specs' base models one model, with DEVICE and DTYPE as they run.

    The path is the folder it lies in for local paths, else as written (hub id,
    builtin name), so this needs no model library and builds nothing.
    """
    model = spec.model
    local = folders.on_disk(model.path, spec.base_dir)
    path = str(local) if local is not None else model.path
    return (
        model.family,
        path,
        model.revision,
        model.variant,
        model.trust_remote_code,
        repr(model.scheduler),
        model.components,
        model.attn_implementation,
        repr(model.quantization),
        device,
        dtype,
    )


@dataclass
class Loaded:
    key: Key
    backend: Backend
    identity: m.Identity
    first_run: Path  # the run directory that loaded it


@dataclass
class Acquired:
    """A backend with its model loaded, for one run."""

    backend: Backend
    identity: m.Identity  # the base model
    source: str  # what load_model was given: a local folder or a hub id
    reused_from: Path | None  # the run that loaded it, when this run did not
    default: m.Identity | None = None  # an adapter folder given as the model: its adapter


class ModelCache:
    """Hands out loaded models; with keep=False (a single run) every run loads its own."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.loaded: Loaded | None = None
        self.lent: Backend | None = None

    def acquire(
        self, spec: Spec, device: str, dtype: str, run_dir: Path, ticker: Ticker | None = None
    ) -> Acquired:
        """The spec's model on DEVICE in DTYPE: the kept one when it matches, else a new load."""
        from runner.record.identity import identify

        prepare_libraries(spec.model.family, ticker)
        source = hub.model_source(spec.model, spec.base_dir)  # may make a builtin
        # An adapter folder given as the model comes with its adapter attached; such a
        # model is loaded for each run rather than rebuilt from a shared base.
        local = Path(source) if Path(source).exists() else None
        shareable = self.keep and folders.adapter_folder(local) is None
        key = model_key(spec, *resolve(device, dtype)) if shareable else None
        if self.loaded is not None and key == self.loaded.key:
            self.lent = self.loaded.backend
            return Acquired(self.lent, self.loaded.identity, source, self.loaded.first_run)
        self.drop()
        model = spec.model
        backend = create_backend(model.family, device, dtype, model.trust_remote_code, ticker)
        backend.load_model(model, source)
        folder = folders.adapter_folder(local)
        if folder is None:
            identity, default = identify(model.path, local, model.revision), None
        else:  # the model is the base the folder names; the folder is adapter `default`
            base, revision = hub.base_source(folder)
            base_local = Path(base) if Path(base).exists() else None
            identity = identify(folders.adapter_base(folder)[0], base_local, revision)
            default = identify(model.path, folder, model.revision)
        if key is not None:
            self.loaded = Loaded(key, backend, identity, run_dir)
        self.lent = backend
        return Acquired(backend, identity, source, None, default)

    def release(self) -> None:
        """The run is over: remove its adapters, or forget a model that cannot be reset."""
        backend, self.lent = self.lent, None
        if backend is None or self.loaded is None or backend is not self.loaded.backend:
            return
        try:
            backend.unload_adapters()
        except Exception:  # noqa: BLE001 - a model in an unknown state is never lent again
            self.drop()

    def drop(self) -> None:
        """Let the kept model go, so that its memory can serve the next one."""
        if self.loaded is not None:
            self.loaded = None
            gc.collect()
