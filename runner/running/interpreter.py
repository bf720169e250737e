"""Walk a spec's steps in order through a backend, recording everything into a run directory.

The interpreter owns the adapter bookkeeping (what is loaded, active, disabled); the
backend owns its library's quirks; the recorder owns what is written.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.backends import memory
from runner.backends.base import Backend, MakesAdapters, Ticker
from runner.errors import Interrupted, RunnerError, StepError, describe, environmental
from runner.record import layout
from runner.record import manifest as m
from runner.record.recorder import Recorder, scheduler_record
from runner.record.samplers import sampler_name
from runner.results import Completion, GeneratedImage, SchedulerUsed
from runner.running import clip, compare, effect, expectations, scoring, shaping
from runner.running.announce import CellCounter, announcing, loaded_line
from runner.running.cellwriter import CellWriter
from runner.running.ending import finish
from runner.running.models import ModelCache
from runner.running.used import used
from runner.sources import hub
from runner.spec import weights
from runner.spec.arguments import ImageArguments
from runner.spec.types import (
    Compare,
    Delete,
    Disable,
    Enable,
    Fuse,
    Generate,
    Load,
    Merge,
    Save,
    Score,
    SetAdapters,
    Spec,
    Step,
    Train,
    Unfuse,
    compare_metrics,
    score_arguments,
)
from runner.spec.weights import Weight


@dataclass
class State:
    """Adapter bookkeeping: what is loaded, what runs (or would run, while disabled)."""

    loaded: list[str] = field(default_factory=list)
    active: dict[str, Weight] = field(default_factory=dict)
    disabled: bool = False

    @property
    def running(self) -> dict[str, Weight] | None:
        """The adapters the model runs with now; None while disabled."""
        return None if self.disabled else dict(self.active)


@dataclass
class Context:
    spec: Spec
    backend: Backend
    state: State
    recorder: Recorder
    index: int = 0  # 1-based number of the step being run
    setup: Setup | None = None
    ticker: Ticker | None = None  # progress within a step


@dataclass
class Made:
    """What a step produced: the files it wrote and a line about each thing it made."""

    outputs: list[m.Output] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scheduler: SchedulerUsed | None = None  # the step's own scheduler, when it set one
    execution: dict[str, Any] = field(default_factory=dict)  # how it was carried out
    scores: list[m.ScoreRow] | None = None  # a score step: each row's summary
    rows: list[m.RowSummary] | None = None  # a compare with a base row: each row's distance
    expectations: list[m.ExpectationResult] | None = None  # the step's `expect:`, checked
    held: tuple[m.MemoryUse, m.MemoryUse] | None = None  # delete: memory before and after


def _load(ctx: Context, step: Load) -> Made:
    made = Made()
    for name in step.adapters:
        adapter = ctx.spec.adapters[name]
        try:
            local = hub.adapter_local(adapter, ctx.spec.base_dir)
            report = ctx.backend.load_adapter(adapter, local)
            if step.strict and report.unmatched_count:
                raise StepError(f"strict: {report.warnings[0]}")
        except RunnerError as exc:
            raise RunnerError(f"adapter '{name}': {exc}") from exc
        except Exception as exc:
            raise RunnerError(f"adapter '{name}': {describe(exc)}") from exc
        ctx.recorder.input_identity(name, adapter, local)
        ctx.recorder.load_report(name, report)
        made.notes.append(report.line(name))
        made.notes.extend(f"warning: adapter {name}: {w}" for w in report.warnings)
        ctx.state.loaded.append(name)
        ctx.state.active = {name: 1.0}
        if ctx.state.disabled:  # a load must not switch a disabled model back on
            ctx.backend.disable()
    return made


def _set_adapters(ctx: Context, step: SetAdapters) -> Made:
    ctx.state.active = dict(step.weights)
    if not ctx.state.disabled:  # while disabled, only choose what enable restores
        ctx.backend.set_adapters(ctx.state.active)
    return Made()


def _generate(ctx: Context, step: Generate) -> Made:
    results = ctx.backend.generate(step)
    folder = layout.output_dir(ctx.index, step.id)
    written = ctx.recorder.outputs(folder, results, ctx.state.running)
    # a PNG per picture; one completions.jsonl for all texts
    files = (
        [w.path for w in written]
        if len(written) == len(results)
        else [written[0].path] * len(results)
    )
    made_by: list[Completion | GeneratedImage] = list(results)
    made = Made(written, [r.summary(file) for r, file in zip(made_by, files, strict=True)])
    if step.expect is not None:
        checked = expectations.of_generate(made_by, len(step.prompts))
        made.expectations = expectations.check(step.expect, checked, None)
        made.notes += expectations.failed(made.expectations)
    own = isinstance(step.args, ImageArguments) and step.args.scheduler is not None
    if own and results and isinstance(results[0], GeneratedImage):
        made.scheduler = record = results[0].scheduler
        if record is not None:
            named = sampler_name(record.type, record.config)
            made.notes.insert(0, f"scheduler {record.type}" + (f" ({named})" if named else ""))
    return made


def _compare(ctx: Context, step: Compare) -> Made:
    cells = compare.plan(step)
    folder = layout.output_dir(ctx.index, step.id or "compare")
    writer = CellWriter(ctx.recorder, folder, [row.label for row in step.rows])

    counted = CellCounter(ctx.ticker, cells)

    def done(cell: compare.PlannedCell, results: list[Completion] | list[GeneratedImage]) -> None:
        weights = None if cell.row.weights is None else dict(cell.row.weights)
        writer.add(cell.row_index, weights, results)
        counted(cell)

    state = ctx.state
    try:
        execution = compare.EXECUTOR(ctx.backend, step, cells, done)
        rows = effect.measure(ctx.backend, step, writer)
        metrics, clipped = clip.measure(step, writer, ctx.spec.base_dir, ctx.backend.device)
    except BaseException:
        counted.stop()
        writer.close(complete=False)  # what finished stays, described by cells.jsonl
        raise
    finally:
        compare.restore(ctx.backend, state.active, state.disabled, bool(state.loaded))
    written, listed = writer.close()
    shape = f"{len(step.rows)} rows x {len(step.prompts)} prompts x {len(step.seeds)} seeds"
    notes = [f"{len(listed)} cells ({shape}) in {folder}"]
    notes += [
        f"warning: row {row.row} changed nothing: every cell equals its base cell"
        for row in rows or []
        if row.noop
    ]
    made = Made(written, notes, execution={**execution, **clipped, "cells": listed}, rows=rows)
    made.scores = metrics or None
    made.notes += [f"{s.row}: clip_score {s.clip_score:.4g}" for s in metrics]
    if step.expect is not None:
        base = effect.base_row(step)
        checked = expectations.of_compare(writer.cells, writer.row_of, base, len(step.prompts))
        made.expectations = expectations.check(step.expect, checked, rows)
        made.notes += expectations.failed(made.expectations)
        accuracy = expectations.accuracy(step.expect, checked, step.rows)  # text compares
        made.scores = accuracy or made.scores
        made.notes += [f"{s.row}: accuracy {s.accuracy:.3f}" for s in accuracy]
    return made


def _score(ctx: Context, step: Score) -> Made:
    folder = layout.output_dir(ctx.index, step.id or "score")
    state = ctx.state
    try:
        done = scoring.score(ctx.backend, step, ctx.recorder, folder)
    finally:
        compare.restore(ctx.backend, state.active, state.disabled, bool(state.loaded))
    return Made(done.outputs, done.notes, execution=done.execution, scores=done.rows)


def _disable(ctx: Context, step: Disable) -> Made:
    ctx.backend.disable()
    ctx.state.disabled = True
    return Made()


def _enable(ctx: Context, step: Enable) -> Made:
    ctx.state.disabled = False
    if ctx.state.loaded:
        ctx.backend.set_adapters(ctx.state.active)
    ctx.backend.enable()
    return Made()


def _maker(ctx: Context) -> MakesAdapters:
    if not isinstance(ctx.backend, MakesAdapters):
        raise StepError(f"the {ctx.spec.model.family} backend cannot make or write adapters")
    return ctx.backend


def _write_adapter(ctx: Context, folder: str, name: str, format: str | None) -> Made:
    """Adapter NAME's files in FORMAT (the family's own when None) into FOLDER."""
    maker = _maker(ctx)
    chosen = format or maker.formats()[0]
    files = maker.adapter_files(name, chosen)
    outputs = [ctx.recorder.write(f"{folder}/{file}", data) for file, data in files.items()]
    listed = ", ".join(f"{o.path} (sha256 {o.sha256[:12]})" for o in outputs)
    return Made(outputs, [f"adapter {name} as {chosen}: {listed}"])


def _merge(ctx: Context, step: Merge) -> Made:
    """The merged adapter joins the loaded ones and becomes the only active one, as a load
    leaves it; its files go into the step's folder."""
    _maker(ctx).merge(step)
    ctx.state.loaded.append(step.name)
    ctx.state.active = {step.name: 1.0}
    if not ctx.state.disabled:
        ctx.backend.set_adapters(ctx.state.active)
    return _write_adapter(ctx, layout.output_dir(ctx.index, step.id or "merge"), step.name, None)


def _train(ctx: Context, step: Train) -> Made:
    """Train the adapter, then write it and loss.jsonl into the step's folder; it is the only
    active adapter afterwards, at weight 1.0."""
    train = getattr(ctx.backend, "train", None)
    if train is None:
        raise StepError(f"the {ctx.spec.model.family} backend cannot train adapters")
    folder = layout.output_dir(ctx.index, step.id or "train")
    checkpoint = ctx.setup.checkpoint if ctx.setup and ctx.setup.checkpoint else None
    start = checkpoint(folder) if checkpoint else None
    kept: list[str] = []

    def keep(files: dict[str, bytes]) -> None:
        """The loop's checkpoint, over the last one: what a resume of this run starts from."""
        named = {f"{folder}/{name}": data for name, data in files.items()}
        kept[:] = [o.path for o in ctx.recorder.write_together(named)]

    if start is not None:
        keep(start)  # a resume of this run, stopped again, starts from it too
    losses = train(step, start, keep)
    ctx.state.active = {step.adapter: 1.0}
    if ctx.state.disabled:
        ctx.backend.disable()
    made = _write_adapter(ctx, folder, step.adapter, None)
    lines = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in losses)
    made.outputs.append(ctx.recorder.write(f"{folder}/{layout.LOSSES}", lines))
    for rel in kept:  # the adapter is written whole: its checkpoint has served
        ctx.recorder.remove(rel)
    first, last = losses[0]["loss"], losses[-1]["loss"]
    made.notes.insert(0, f"{len(losses)} steps, loss {first:.4f} -> {last:.4f}")
    return made


def _save(ctx: Context, step: Save) -> Made:
    folder = layout.output_dir(ctx.index, step.id or "save")
    return _write_adapter(ctx, folder, step.adapter, step.format)


def _shaped(done: shaping.Done) -> Made:
    return Made(notes=done.notes, execution=done.execution, held=done.held)


OPS: dict[str, Callable[[Context, Any], Made]] = {
    "load": _load,
    "set_adapters": _set_adapters,
    "generate": _generate,
    "compare": _compare,
    "disable": _disable,
    "enable": _enable,
    "score": lambda ctx, step: _score(ctx, step),
    "merge": _merge,
    "train": _train,
    "save": _save,
    "fuse": lambda ctx, step: _shaped(shaping.fuse(ctx.state, ctx.backend, step)),
    "unfuse": lambda ctx, step: _shaped(shaping.unfuse(ctx.state, ctx.backend, step)),
    "delete": lambda ctx, step: _shaped(shaping.delete(ctx.state, ctx.backend, step)),
}


@dataclass(frozen=True)
class Overrides:
    """What `--device` or a reproduction sets instead of the spec's own values."""

    device: str | None = None
    dtype: str | None = None
    threads: int | None = None


@dataclass
class Setup:
    """What running many specs, a Ray worker or a resume adds to a plain run."""

    models: ModelCache | None = None  # keeps the base model loaded from one run to the next
    # Before a step runs: its outputs taken from elsewhere (a stopped run), or None to run it.
    reuse: Callable[[Context, Step], Made | None] | None = None
    origin: m.Origin = field(default_factory=m.Origin)
    run_dir: Path | None = None  # an empty run directory made beforehand
    # A train step's checkpoint to continue from (by its output folder), from a stopped run.
    checkpoint: Callable[[str], dict[str, bytes] | None] | None = None


def execute(
    spec: Spec,
    out: Path,
    overrides: Overrides = Overrides(),
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,  # progress within a step, and the libraries' notes
    setup: Setup | None = None,
) -> Path:
    """Run SPEC into a new run directory under OUT and return it.

    A failing step raises StepError, an interrupt re-raises Interrupted; either way the
    run directory keeps what was finished, says why in its manifest and is checksummed.
    """
    setup = setup or Setup()
    recorder = Recorder.start(out, spec, folder=setup.run_dir, origin=setup.origin)
    index, where = 0, spec.where(0)
    with contextlib.ExitStack() as loaded:
        try:
            loaded.enter_context(announcing(progress))
            backend, state = _prepare(spec, recorder, overrides, setup.models, ticker, progress)
            ctx = Context(spec, backend, state, recorder, setup=setup, ticker=ticker)
            loaded.enter_context(_frozen())
            for index, step in enumerate(spec.steps, start=1):
                ctx.index, where = index, spec.where(index)
                _run_step(ctx, step, progress)
            where = f"{spec.file}: the run's record"
            finish(recorder, "succeeded")  # a full disk here still closes the run as failed
        except (Interrupted, KeyboardInterrupt) as exc:
            finish(recorder, "interrupted", m.Failure(index, where, "interrupted"))
            stop = exc if isinstance(exc, Interrupted) else Interrupted("SIGINT")
            stop.run_dir = recorder.run
            raise stop from None
        except Exception as exc:
            message = str(exc) if isinstance(exc, RunnerError) else describe(exc)
            finish(recorder, "failed", m.Failure(index, where, message))
            if not isinstance(exc, RunnerError) and not environmental(exc):
                # a bug of the runner: recorded as failed, then raised with its traceback
                exc.run_dir = recorder.run  # type: ignore[attr-defined]
                raise
            error = StepError(f"{where}: {message}")
            error.run_dir = recorder.run
            raise error from exc
    return recorder.run


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """The objects alive now (the libraries, the model) left out of the cycle collector's
    walks until the block ends: a long run's records set off full collections, each of
    which would walk every object torch and transformers made (a fifth of a second).
    Not when the caller froze objects itself: unfreezing would thaw theirs too."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _prepare(
    spec: Spec,
    recorder: Recorder,
    overrides: Overrides,
    models: ModelCache | None,
    ticker: Ticker | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> tuple[Backend, State]:
    """Settings, environment and the model; an adapter folder as model brings `default`."""
    from runner.backends.determinism import apply_determinism
    from runner.record.environment import capture

    # Before the backend starts CUDA: CUBLAS_WORKSPACE_CONFIG is read when cuBLAS starts.
    applied = apply_determinism(
        overrides.device or spec.device, overrides.threads, spec.deterministic
    )
    started = time.perf_counter()
    progress(f"loading model {spec.model.path} ({spec.model.family}) ...")
    got = (models or ModelCache(keep=False)).acquire(
        spec, overrides.device or spec.device, overrides.dtype or spec.dtype, recorder.run, ticker
    )
    progress(loaded_line(got, time.perf_counter() - started))
    backend = got.backend
    if got.reused_from is not None:
        recorder.manifest.origin.model_reused_from = str(got.reused_from)
    environment = capture(backend.device)
    settings = m.Settings(
        device=backend.device,
        device_name=(environment["gpu"] or {}).get("name") or environment["cpu"],
        dtype=backend.dtype,
        seed=spec.seed,
        threads=applied["threads"],
        deterministic=applied,
    )
    recorder.prepared(environment, settings, got.identity, backend.setup())
    if got.default is None:
        return backend, State()
    # An adapter folder as model: the model is the base it names, the folder is `default`.
    recorder.inputs_adapter("default", got.default)
    return backend, State(loaded=["default"], active={"default": 1.0})


def _run_step(ctx: Context, step: Step, progress: Callable[[str], None]) -> None:
    started = time.perf_counter()
    record = m.StepRecord(
        index=ctx.index, op=step.op, id=step.id, line=step.line, status="ok", seconds=0.0
    )
    peak = memory.Peak(ctx.backend.device)
    try:
        reuse = ctx.setup.reuse if ctx.setup else None
        made = (reuse(ctx, step) if reuse else None) or OPS[step.op](ctx, step)
    except BaseException as exc:
        stopped = isinstance(exc, (Interrupted, KeyboardInterrupt))
        record.status = "interrupted" if stopped else "failed"
        record.seconds = round(time.perf_counter() - started, 3)
        record.memory = peak.read()
        with contextlib.suppress(RunnerError):  # a full disk: the step's own error counts
            ctx.recorder.step(record)
        raise
    seconds = time.perf_counter() - started
    record.seconds = round(seconds, 3)
    record.memory = peak.read()
    if made.held is not None:
        record.memory.before, record.memory.after = made.held
    record.arguments = _arguments(step)
    record.active_adapters = ctx.state.running
    record.outputs = made.outputs
    record.scheduler = scheduler_record(made.scheduler)
    record.execution = {**made.execution, **used(ctx.backend, step)}
    record.scores = made.scores
    record.rows = made.rows
    record.expectations = made.expectations
    ctx.recorder.step(record)
    shown = "disabled" if ctx.state.disabled else _show(ctx.state.active)
    progress(
        f"step {ctx.index}/{len(ctx.spec.steps)} {step.op:<12} adapters: {shown}  {seconds:.2f}s"
    )
    for note in made.notes:
        progress(f"    {note}")


def _arguments(step: Step) -> dict[str, Any]:
    if isinstance(step, Load):
        return {"adapters": list(step.adapters)}
    if isinstance(step, SetAdapters):
        return {"adapters": dict(step.weights)}
    if isinstance(step, Generate):
        return {"prompt": list(step.prompts), "seed": step.seed, **step.args.written()}
    if isinstance(step, Compare):
        return {
            "rows": [r.label for r in step.rows],
            "adapters": [None if r.weights is None else dict(r.weights) for r in step.rows],
            "prompt": list(step.prompts),
            "seed": list(step.seeds),
            **step.args.written(),
            **compare_metrics(step),
        }
    if isinstance(step, (Merge, Save, Train, Fuse, Unfuse, Delete)):
        return step.arguments()
    if isinstance(step, Score):
        return score_arguments(step)
    return {}


def _show(active: dict[str, Weight]) -> str:
    if not active:
        return "none"
    return ", ".join(weights.shown(name, w) for name, w in active.items())
