"""Walk a spec's steps in order through a backend, recording everything into a run directory.

The interpreter, not the library, keeps track of which adapters are loaded, active
and disabled: `active_adapters()` keeps reporting adapters while they are disabled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import sources
from runner.backends import Backend, Picture, Ticker, create_backend
from runner.errors import RunnerError, StepError
from runner.record.recorder import Recorder
from runner.record.rundir import output_dir
from runner.spec.types import Disable, Enable, Generate, Load, SetAdapters, Spec, Step


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; the run stops and is recorded as interrupted."""

    run_dir: Path | None = None


@dataclass
class State:
    """Adapter bookkeeping: what is loaded, what runs (or would run, while disabled)."""

    loaded: list[str] = field(default_factory=list)
    active: dict[str, float] = field(default_factory=dict)
    disabled: bool = False

    @property
    def running(self) -> dict[str, float] | None:
        """The adapters the model runs with now; None while disabled."""
        return None if self.disabled else dict(self.active)


@dataclass
class Context:
    spec: Spec
    backend: Backend
    state: State
    recorder: Recorder
    index: int = 0  # 1-based number of the step being run
    notes: list[str] = field(default_factory=list)  # what the step made, for the progress line


def _load(ctx: Context, step: Load) -> list[dict[str, str]]:
    for name in step.adapters:
        adapter = ctx.spec.adapters[name]
        try:
            local = sources.adapter_local(adapter, ctx.spec.base_dir)
            ctx.backend.load_adapter(adapter, local)
        except RunnerError as exc:
            raise RunnerError(f"adapter '{name}': {exc}") from exc
        except Exception as exc:
            raise RunnerError(f"adapter '{name}': {_describe(exc)}") from exc
        ctx.recorder.input_identity(name, adapter, local)
        ctx.state.loaded.append(name)
        ctx.state.active = {name: 1.0}
        if ctx.state.disabled:  # a load must not switch a disabled model back on
            ctx.backend.disable()
    return []


def _set_adapters(ctx: Context, step: SetAdapters) -> list[dict[str, str]]:
    ctx.state.active = dict(step.weights)
    if not ctx.state.disabled:  # while disabled, only choose what enable restores
        ctx.backend.set_adapters(ctx.state.active)
    return []


def _generate(ctx: Context, step: Generate) -> list[dict[str, str]]:
    results = ctx.backend.generate(step)
    folder = output_dir(ctx.index, step.id)
    if results and isinstance(results[0], Picture):
        written = ctx.recorder.pictures(folder, results, ctx.state.running)  # type: ignore[arg-type]
        ctx.notes = [f"{p.prompt!r} -> {w['path']}" for p, w in zip(results, written, strict=True)]
        return written
    ctx.notes = [f"{c.prompt!r} -> {c.text!r}" for c in results]  # type: ignore[union-attr]
    return ctx.recorder.completions(folder, results, ctx.state.running)  # type: ignore[arg-type]


def _disable(ctx: Context, step: Disable) -> list[dict[str, str]]:
    if ctx.state.loaded:  # with no adapter the base runs anyway; diffusers would raise
        ctx.backend.disable()
    ctx.state.disabled = True
    return []


def _enable(ctx: Context, step: Enable) -> list[dict[str, str]]:
    ctx.state.disabled = False
    if ctx.state.loaded:
        ctx.backend.set_adapters(ctx.state.active)
        ctx.backend.enable()
    return []


OPS: dict[str, Callable[[Context, Any], list[dict[str, str]]]] = {
    "load": _load,
    "set_adapters": _set_adapters,
    "generate": _generate,
    "disable": _disable,
    "enable": _enable,
}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass(frozen=True)
class Overrides:
    """What `--device` or a reproduction sets instead of the spec's own values."""

    device: str | None = None
    dtype: str | None = None
    threads: int | None = None


def execute(
    spec: Spec,
    out: Path,
    overrides: Overrides = Overrides(),
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,  # progress within a step, and the libraries' notes
) -> Path:
    """Run SPEC into a new run directory under OUT and return it.

    A failing step raises StepError, an interrupt re-raises Interrupted; either way the
    run directory keeps what was finished, says why in its manifest and is checksummed.
    """
    recorder = Recorder.start(out, spec)
    index, where = 0, f"{spec.file}:{spec.model.line}: model"
    try:
        ctx = Context(spec, *_prepare(spec, recorder, overrides, ticker), recorder)
        for index, step in enumerate(spec.steps, start=1):
            ctx.index, where = index, f"{spec.file}:{step.line}: step {index} ({step.op})"
            _run_step(ctx, step, progress)
    except (Interrupted, KeyboardInterrupt) as exc:
        recorder.finish("interrupted", {"step": index, "where": where, "message": "interrupted"})
        stop = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT")
        stop.run_dir = recorder.run
        raise stop from None
    except Exception as exc:
        message = str(exc) if isinstance(exc, RunnerError) else _describe(exc)
        recorder.finish("failed", {"step": index, "where": where, "message": message})
        error = StepError(f"{where}: {message}")
        error.run_dir = str(recorder.run)
        raise error from exc
    recorder.finish("succeeded")
    return recorder.run


def _prepare(
    spec: Spec, recorder: Recorder, overrides: Overrides, ticker: Ticker | None = None
) -> tuple[Backend, State]:
    """Settings, environment and the model; an adapter folder as model brings `default`."""
    from runner.record.environment import apply_determinism, capture

    # Before the backend starts CUDA: CUBLAS_WORKSPACE_CONFIG is read when cuBLAS starts.
    applied = apply_determinism(
        overrides.device or spec.device, overrides.threads, spec.deterministic
    )
    backend = create_backend(
        spec.model.family,
        overrides.device or spec.device,
        overrides.dtype or spec.dtype,
        spec.model.trust_remote_code,
        ticker,
    )
    environment = recorder.manifest["environment"] = capture(backend.device)
    recorder.manifest["settings"] = {
        "device": backend.device,
        "device_name": (environment["gpu"] or {}).get("name") or environment["cpu"],
        "dtype": backend.dtype,
        "seed": spec.seed,
        "threads": applied["threads"],
        "deterministic": applied,
    }
    source = sources.model_source(spec.model, spec.base_dir)
    backend.load_model(spec.model, source)
    recorder.model_identity(spec.model.path, source, spec.model.revision)
    recorder.save()
    if (Path(source) / "adapter_config.json").is_file():
        return backend, State(loaded=["default"], active={"default": 1.0})
    return backend, State()


def _run_step(ctx: Context, step: Step, progress: Callable[[str], None]) -> None:
    started = time.perf_counter()
    entry: dict[str, Any] = {"index": ctx.index, "op": step.op, "id": step.id, "line": step.line}
    try:
        outputs = OPS[step.op](ctx, step)
    except BaseException as exc:
        stopped = isinstance(exc, (Interrupted, KeyboardInterrupt))
        entry.update(status="interrupted" if stopped else "failed")
        entry.update(seconds=round(time.perf_counter() - started, 3))
        ctx.recorder.step(entry)
        raise
    seconds = time.perf_counter() - started
    entry.update(
        status="ok",
        seconds=round(seconds, 3),
        arguments=_arguments(step),
        active_adapters=ctx.state.running,
        outputs=outputs,
    )
    ctx.recorder.step(entry)
    shown = "disabled" if ctx.state.disabled else _show(ctx.state.active)
    progress(
        f"step {ctx.index}/{len(ctx.spec.steps)} {step.op:<12} adapters: {shown}  {seconds:.2f}s"
    )
    for note in ctx.notes:
        progress(f"    {note}")
    ctx.notes = []


def _arguments(step: Step) -> dict[str, Any]:
    if isinstance(step, Load):
        return {"adapters": list(step.adapters)}
    if isinstance(step, SetAdapters):
        return {"adapters": dict(step.weights)}
    if isinstance(step, Generate):
        return {"prompt": list(step.prompts), "seed": step.seed, **step.args}
    return {}


def _show(active: dict[str, float]) -> str:
    if not active:
        return "none"
    return ", ".join(name if w == 1.0 else f"{name}={w:g}" for name, w in active.items())
