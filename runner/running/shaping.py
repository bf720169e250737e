"""The shaping ops of the interpreter: fuse, unfuse, delete (CONTRACT section 12).

Each takes the interpreter's adapter books and the backend, and gives back the lines to
show and what to record under the step's `execution`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from runner.backends.base import Backend
from runner.errors import StepError
from runner.record import manifest as m
from runner.spec import weights
from runner.spec.types import Delete, Fuse, Unfuse
from runner.spec.weights import Weight


class Done(NamedTuple):
    notes: list[str]
    execution: dict[str, Any]
    held: tuple[m.MemoryUse, m.MemoryUse] | None = None  # delete: memory before and after


class Books(Protocol):
    """The interpreter's State: what is loaded and active, and whether adapters are off."""

    loaded: list[str]
    active: dict[str, Weight]
    disabled: bool


def fuse(state: Books, backend: Backend, step: Fuse) -> Done:
    if state.disabled or not state.active:
        raise StepError("fuse needs active adapters (none run now)")
    ranged = [name for name, weight in state.active.items() if weights.ranged(weight)]
    if ranged:
        raise StepError(
            f"fuse of '{ranged[0]}', which runs for a range of steps: fused weights run at "
            f"every step; set_adapters without steps first"
        )
    execution = backend.fuse(dict(state.active), step.lora_scale)
    note = f"fused {', '.join(state.active)}; base weights sha256 {execution['base_sha256']}"
    return Done([note], {**execution, "lora_scale": step.lora_scale})


def unfuse(state: Books, backend: Backend, step: Unfuse) -> Done:
    execution = backend.unfuse()
    if state.active and not state.disabled:
        # diffusers leaves each layer scaled by fuse's lora_scale after unfuse_lora: the
        # weights set before fuse run again, as the run's books say.
        backend.set_adapters(dict(state.active))
    note = f"unfused; base weights bit-identical to before fuse ({execution['base_sha256']})"
    return Done([note], execution)


def delete(state: Books, backend: Backend, step: Delete) -> Done:
    from runner.backends.memory import used

    missing = [name for name in step.adapters if name not in state.loaded]
    if missing:
        raise StepError(f"adapter '{missing[0]}' is not loaded")
    before = used(backend.device)
    state.active = {n: w for n, w in state.active.items() if n not in step.adapters}
    state.loaded = [n for n in state.loaded if n not in step.adapters]
    backend.delete_adapters(list(step.adapters), state.active)
    if state.disabled:  # a delete must not switch a disabled model back on
        backend.disable()
    after = used(backend.device)
    note = f"deleted {', '.join(step.adapters)}; freed {before.minus(after).shown()}"
    return Done([note], {}, (before, after))
