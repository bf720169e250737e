"""Several specs, one after another, each into its own run directory.

Specs that share a base model run back to back (in the order each model first appears),
so that the model is loaded once and every later spec starts from it with its adapters
removed. A failing spec does not stop the others; an interrupt stops them all, and the
spec that was running is recorded as interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from runner.errors import Interrupted, RunDirError, RunnerError, StepError
from runner.record import layout
from runner.record import manifest as m
from runner.running.interpreter import Overrides, Setup, execute
from runner.running.models import ModelCache, model_key
from runner.spec.types import Spec

NOT_RUN = "not run"


@dataclass
class Outcome:
    """How one spec of many went."""

    spec: str  # the spec's file, as given
    name: str
    status: str  # succeeded | failed | interrupted | not run
    run_dir: Path | None = None
    seconds: float = 0.0
    message: str = ""  # why it failed
    notes: list[str] = field(default_factory=list)  # a reused model, a retry after a dead worker
    expectations_failed: int = 0  # a succeeded run's failed `expect:` entries


@dataclass
class Many:
    """Every spec's outcome, in the order the specs were given; iterating it, indexing it
    and len() go over the outcomes (`for o in runner.run_many([...])`)."""

    outcomes: list[Outcome]
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status == "succeeded" for o in self.outcomes)

    @property
    def expectations_failed(self) -> bool:
        """Some run succeeded but an expectation of it failed (`runner run` exits 4)."""
        return any(o.expectations_failed for o in self.outcomes)

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    @overload
    def __getitem__(self, index: int) -> Outcome: ...
    @overload
    def __getitem__(self, index: slice) -> list[Outcome]: ...
    def __getitem__(self, index: int | slice) -> Outcome | list[Outcome]:
        return self.outcomes[index]


def pending(spec: Spec) -> Outcome:
    return Outcome(str(spec.file), spec.name, NOT_RUN)


def grouped(keys: list[Hashable]) -> list[int]:
    """Indices ordered so that equal keys are adjacent, groups in order of first appearance."""
    first: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return sorted(range(len(keys)), key=lambda i: (first[keys[i]], i))


def group_key(spec: Spec, overrides: Overrides) -> Hashable:
    """Specs with equal keys share a base model; `auto` is resolved later, by the backend."""
    return model_key(spec, overrides.device or spec.device, overrides.dtype or spec.dtype)


def run_one(
    spec: Spec,
    out: Path,
    overrides: Overrides,
    models: ModelCache,
    progress: Callable[[str], None],
    setup: Setup | None = None,
) -> Outcome:
    """One spec into its run directory, its failure caught; the model's adapters removed
    afterwards. Interrupted propagates, with the run directory it stopped."""
    setup = setup or Setup()
    setup.models = models
    outcome = pending(spec)
    started = time.perf_counter()
    try:
        outcome.run_dir = execute(spec, out, overrides, progress, setup=setup)
        outcome.status = "succeeded"
    except StepError as exc:
        outcome.status, outcome.run_dir, outcome.message = "failed", exc.run_dir, str(exc)
    except RunnerError as exc:  # no run directory: --out cannot take one
        outcome.status, outcome.message = "failed", str(exc)
    finally:
        outcome.seconds = round(time.perf_counter() - started, 3)
        models.release()
    if outcome.run_dir is not None:
        manifest = _manifest(outcome.run_dir)
        reused = manifest.origin.model_reused_from if manifest else None
        if reused:
            outcome.notes.append(f"model reused from {reused}")
        failed = manifest.failed_expectations() if manifest else []
        if failed and outcome.status == "succeeded":
            outcome.expectations_failed = len(failed)
            outcome.notes.append(f"expectations failed: {', '.join(failed)}")
    return outcome


def _manifest(run_dir: Path) -> m.Manifest | None:
    try:
        return m.read(run_dir)
    except RunnerError:
        return None


def run_many(
    specs: list[Spec],
    out: Path,
    overrides: Overrides | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Many:
    """Run every spec in this process, keeping a shared base model loaded between them."""
    overrides = overrides or Overrides()
    outcomes = [pending(spec) for spec in specs]
    models = ModelCache()
    try:
        for i in grouped([group_key(spec, overrides) for spec in specs]):
            spec = specs[i]
            progress(f"[{spec.name}] {spec.file}")
            started = time.perf_counter()
            try:
                outcomes[i] = run_one(spec, out, overrides, models, _tagged(spec, progress))
            except (Interrupted, KeyboardInterrupt) as exc:
                stopped = pending(spec)
                stopped.status, stopped.run_dir = "interrupted", getattr(exc, "run_dir", None)
                stopped.seconds = round(time.perf_counter() - started, 3)
                outcomes[i] = stopped
                return Many(outcomes, interrupted=True)
            progress(f"[{spec.name}] {outcomes[i].status} in {outcomes[i].seconds:.2f}s")
    finally:
        models.drop()
    return Many(outcomes)


def _tagged(spec: Spec, progress: Callable[[str], None]) -> Callable[[str], None]:
    return lambda line: progress(f"[{spec.name}] {line}")


def table(many: Many) -> str:
    """The end of a multi-spec run: spec, status, seconds, run directory (and report page),
    then what went wrong or was noted, spec by spec."""
    pages = [_report(o.run_dir) for o in many.outcomes]
    scores = [_best(o.run_dir) for o in many.outcomes]
    head = ["spec", "status", "seconds", "run directory"] + (["report"] if any(pages) else [])
    head += ["best scores"] if any(scores) else []
    rows = [head]
    for o, page, best in zip(many.outcomes, pages, scores, strict=True):
        seconds = f"{o.seconds:.2f}" if o.status != NOT_RUN else "-"
        row = [o.spec, o.status, seconds, str(o.run_dir or "-")]
        row += [page or "-"] if any(pages) else []
        rows.append(row + ([best or "-"] if any(scores) else []))
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    lines = [
        "  ".join(
            cell.rjust(width) if c == 2 else cell.ljust(width)
            for c, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    for o in many.outcomes:
        lines += [f"{o.spec}: {text}" for text in [o.message, *o.notes] if text]
    return "\n".join(lines)


def _best(run_dir: Path | None) -> str | None:
    """Each scoring step's best row by its first metric (loglik; a compare's accuracy or
    clip_score), and by acc where it has one: `loglik: a (-7.006)`; None for a run without
    scores, or one whose manifest cannot be read."""
    if run_dir is None:
        return None
    try:
        steps = m.read(run_dir).steps
    except RunDirError:
        return None
    shown = []
    for step in steps:
        rows = step.scores or []
        if not rows:
            continue
        metric = next(
            k for k in ("loglik", "accuracy", "clip_score") if getattr(rows[0], k) is not None
        )
        top = max(rows, key=lambda r: getattr(r, metric))
        text = f"{step.id or step.index}: {top.row} ({getattr(top, metric):.4g})"
        if rows[0].acc is not None:
            right = max(rows, key=lambda r: r.acc or 0.0)
            text += f", acc {right.row} ({right.acc:.3g})"
        shown.append(text)
    return "; ".join(shown) or None


def left_over(many: Many, out: Path) -> list[str]:
    """The commands that finish an interrupted batch: `runner run --resume RUN` for each
    run that stopped part-way, one `runner run` for the specs that never started."""
    import shlex

    lines = [
        f"runner run --resume {shlex.quote(str(o.run_dir))}"
        for o in many.outcomes
        if o.status == "interrupted" and o.run_dir is not None
    ]
    never = [shlex.quote(o.spec) for o in many.outcomes if o.status == NOT_RUN]
    if never:
        lines.append(f"runner run {' '.join(never)} --out {shlex.quote(str(out))}")
    return lines


def _report(run_dir: Path | None) -> str | None:
    page = run_dir / layout.REPORT if run_dir else None
    return str(page) if page and page.is_file() else None
