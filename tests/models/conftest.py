"""Loaded pipelines shared by the model tier: loading one takes longer than drawing with it.

`pipes` hands out diffusers pipelines as a user of diffusers loads them (the oracles), and
`diffusers_backends` the runner's backend on a pipeline; both keep what they loaded for the
session and take it back after each test with every LoRA unloaded (`unload_lora_weights`,
`unload_adapters`), checked: a test that leaves a LoRA layer, another scheduler or a
LoRA config behind fails here rather than in the test after it. A test that needs two
pipelines of one model at once takes two: each call hands out one no other holder has.

A test marked `spoils_pipes` gives back nothing: a pipeline that drew with a LoRA scale
(`cross_attention_kwargs={"scale": ...}`) draws one level in 255 apart from a fresh one
after its LoRAs are unloaded, so it is not lent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class Pool:
    """Objects made by MAKE(key) once, lent out one holder at a time and CLEANed on return."""

    def __init__(self, make: Callable[[Path], Any], clean: Callable[[Any], None]) -> None:
        self.make, self.clean = make, clean
        self.free: dict[Path, list[Any]] = {}
        self.lent: list[tuple[Path, Any]] = []

    def take(self, key: Path) -> Any:
        free = self.free.setdefault(key, [])
        thing = free.pop() if free else self.make(key)
        self.lent.append((key, thing))
        return thing

    def give_back(self, keep: bool = True) -> None:
        """Clean what was lent and keep it for the next holder, or (KEEP false) drop it."""
        lent, self.lent = self.lent, []
        for key, thing in lent:
            if keep:
                self.clean(thing)
                self.free[key].append(thing)


def lora_free(pipe: Any) -> None:
    """Fails unless no component of PIPE holds a peft layer or config."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, component in pipe.components.items():
        modules = component.modules() if hasattr(component, "modules") else []
        left = [type(m).__name__ for m in modules if isinstance(m, BaseTunerLayer)]
        assert not left, f"{name} keeps {len(left)} LoRA layers after the test"
        assert not getattr(component, "peft_config", None), f"{name} keeps a peft_config"


def load_pipe(model: Path) -> Any:
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def clean_pipe(pipe: Any) -> None:
    pipe.unload_lora_weights()
    lora_free(pipe)


def load_backend(model: Path) -> Any:
    from runner.backends.diffusers_backend import DiffusersBackend
    from runner.spec.types import Model

    backend = DiffusersBackend("cpu", "auto")
    backend.load_model(Model("diffusers", str(model)), model)
    backend.pipe.set_progress_bar_config(disable=True)
    return backend


def clean_backend(backend: Any) -> None:
    backend.unload_adapters()
    assert backend.adapters() == set()
    assert backend.pipe.scheduler is backend.scheduler is backend.own_scheduler
    lora_free(backend.pipe)


@pytest.fixture(scope="session")
def _pipe_pool() -> Pool:
    return Pool(load_pipe, clean_pipe)


@pytest.fixture(scope="session")
def _backend_pool() -> Pool:
    return Pool(load_backend, clean_backend)


def _keeps(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("spoils_pipes") is None


@pytest.fixture
def pipes(_pipe_pool: Pool, request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Any]]:
    """pipes(model): the pipeline of MODEL as DiffusionPipeline.from_pretrained gives it."""
    yield _pipe_pool.take
    _pipe_pool.give_back(_keeps(request))


@pytest.fixture
def diffusers_backends(
    _backend_pool: Pool, request: pytest.FixtureRequest
) -> Iterator[Callable[[Path], Any]]:
    """diffusers_backends(model): a DiffusersBackend (cpu, auto) with MODEL loaded."""
    yield _backend_pool.take
    _backend_pool.give_back(_keeps(request))
