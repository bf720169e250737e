"""Specs spread over a Ray cluster: one worker (a Ray actor) per GPU, each keeping its base
model loaded for the specs that share it.

The driver makes every run directory under --out before a worker runs the spec into it,
so a worker that dies leaves a run directory the driver knows: the driver finishes its
record from the journal (failed, or interrupted on Ctrl-C) and runs the spec once more,
on another worker, into a new run directory. Ctrl-C kills the busy workers at once; their
runs are recorded as interrupted with every step they finished.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import Interrupted, RunnerError
from runner.record import rundir
from runner.record.files import sha256_bytes
from runner.running import orphan
from runner.running.following import Followed
from runner.running.interpreter import Overrides
from runner.running.many import Many, Outcome, group_key, pending
from runner.running.plan import Plan
from runner.running.ray_worker import Job, Worker
from runner.spec.types import Spec

INSTALL = "pip install 'peft-runner[ray]'"
STOP_WAIT_S = 30.0  # how long a killed worker may take to be gone


def missing_ray() -> str | None:
    """Why running on Ray cannot work here, in one line; None when Ray is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return f"Ray is not installed: {INSTALL}"
    return None


@dataclass
class Slot:
    """One worker as the driver sees it."""

    actor: Any
    name: str
    model: Any = None  # the key of the model it holds
    job: Job | None = None


def run_on_ray(
    specs: list[Spec],
    out: Path,
    overrides: Overrides,
    progress: Callable[[str], None],
    address: str | None = None,
    workers: int | None = None,
) -> Many:
    """Run SPECS on Ray: ADDRESS None starts a local Ray (unless this process has one),
    `auto` or an address joins a cluster. WORKERS: how many; default one per GPU."""
    problem = missing_ray()
    if problem:
        raise RunnerError(problem)
    import ray

    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            options.update(include_dashboard=False, num_cpus=max(workers or 1, os.cpu_count() or 1))
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = "start a local Ray" if address is None else f"join the Ray cluster at {address}"
            raise RunnerError(f"Ray: cannot {where}: {_reason(exc)}") from exc
    try:
        with _signals_noted() as noted:
            return Driver(ray, specs, out.resolve(), overrides, progress, workers, noted).run()
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _signals_noted() -> Iterator[list[str]]:
    """SIGINT and SIGTERM noted for the driver loop to act on, not raised where they land:
    raised inside one of Ray's compiled calls, an exception comes out as a SystemError."""
    noted: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted  # signals reach only the main thread
        return

    def note(signum: int, frame: object) -> None:
        noted.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Driver:
    """Hands specs to workers, collects outcomes, retries a spec whose worker died."""

    def __init__(
        self,
        ray: Any,
        specs: list[Spec],
        out: Path,
        overrides: Overrides,
        progress: Callable[[str], None],
        workers: int | None,
        signals: list[str],
    ) -> None:
        self.ray, self.out, self.progress, self.signals = ray, out, progress, signals
        self.outcomes = [pending(spec) for spec in specs]
        self.plan: Plan[Job] = Plan()
        for i, spec in enumerate(specs):
            job = Job(i, spec, out, Path(), overrides)
            self.plan.add(group_key(spec, overrides), job)
        count, resources = self._workers(workers, len(specs))
        self.actor_class = ray.remote(Worker).options(**resources)
        self.slots = self._start(count)
        self.busy: dict[Any, Slot] = {}  # task ref -> the slot running it
        self.followed: dict[int, Followed] = {}  # job index -> its run, since its dispatch

    def _workers(self, workers: int | None, jobs: int) -> tuple[int, dict[str, Any]]:
        """How many workers, and what each holds: a GPU, else a CPU."""
        available = self.ray.cluster_resources()
        gpus, cpus = int(available.get("GPU", 0)), int(available.get("CPU", 0))
        if gpus and workers and workers > gpus:
            raise RunnerError(f"{workers} workers: the Ray cluster has {gpus} GPU(s)")
        if not gpus and (workers or 1) > cpus:
            raise RunnerError(f"{workers} workers: the Ray cluster has {cpus} CPU(s)")
        count = min(workers or gpus or 1, max(jobs, 1))
        self.progress(
            f"ray: {count} worker(s), one {'GPU' if gpus else 'CPU'} each"
            + ("" if gpus or workers else " (the cluster has no GPU; ask for more workers)")
        )
        return count, {"num_gpus": 1} if gpus else {"num_cpus": 1}

    def _start(self, count: int) -> list[Slot]:
        """COUNT new workers, started together; each answers with its host:pid once up."""
        actors = [self.actor_class.remote(os.environ.get("OMP_NUM_THREADS")) for _ in range(count)]
        try:
            names = self.ray.get([actor.describe.remote() for actor in actors])
        except self.ray.exceptions.RayError as exc:
            raise RunnerError(f"a Ray worker could not start: {_reason(exc)}") from None
        return [Slot(actor, name) for actor, name in zip(actors, names, strict=True)]

    def run(self) -> Many:
        try:
            while len(self.plan) or self.busy:
                if self.signals:
                    raise Interrupted(self.signals[0])
                self._dispatch()
                if not self.busy:
                    continue
                ready, _ = self.ray.wait(list(self.busy), num_returns=1, timeout=1.0)
                self._follow()
                for ref in ready:
                    self._collect(ref)
        except (Interrupted, KeyboardInterrupt):
            self._stop()
            return Many(self.outcomes, interrupted=True)
        finally:
            for slot in self.slots:
                self.ray.kill(slot.actor, no_restart=True)
        return Many(self.outcomes)

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.job is not None:
                continue
            held = [s.model for s in self.slots if s.job is not None]
            taken = self.plan.next(slot.model, held)
            if taken is None:
                continue
            slot.model, job = taken
            try:
                job.run_dir = rundir.create(self.out, job.spec.name, sha256_bytes(job.spec.raw))
            except RunnerError as exc:
                self._done(job, _failed(job, str(exc), None))
                continue
            slot.job = job
            self.busy[slot.actor.run.remote(job)] = slot
            self.followed[job.index] = Followed(job.run_dir, time.perf_counter())
            self.progress(f"[{job.spec.name}] started on {slot.name}")

    def _follow(self) -> None:
        """Each busy run's steps as its worker finishes them, read from its journal on the
        shared --out (the worker writes a line per finished step there anyway)."""
        for slot in self.busy.values():
            job = slot.job
            if job is not None and job.index in self.followed:
                for line in self.followed[job.index].new_steps(len(job.spec.steps)):
                    self.progress(f"[{job.spec.name}] {line}")

    def _collect(self, ref: Any) -> None:
        slot = self.busy.pop(ref)
        job, slot.job = slot.job, None
        assert job is not None
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayActorError:
            self._worker_died(slot, job)
            return
        except self.ray.exceptions.RayError as exc:
            outcome = _failed(job, f"its Ray worker {slot.name} failed: {_reason(exc)}", None)
        outcome.run_dir = outcome.run_dir or job.run_dir
        if outcome.status == "failed":  # a run that could not record its own end
            orphan.close(job.run_dir, job.spec, "failed", outcome.message)
        self._done(job, outcome)

    def _worker_died(self, slot: Slot, job: Job) -> None:
        why = f"its Ray worker {slot.name} died while running it"
        orphan.close(job.run_dir, job.spec, "failed", why)
        self.slots[self.slots.index(slot)] = self._start(1)[0]
        if job.attempt > 1:
            self._done(job, _failed(job, f"{why}, a second time", job.run_dir))
            return
        self.progress(f"[{job.spec.name}] {why}; kept in {job.run_dir}; running it again")
        again = Job(job.index, job.spec, self.out, Path(), job.overrides, 2, job.run_dir)
        self.plan.add(group_key(job.spec, job.overrides), again, first=True)

    def _done(self, job: Job, outcome: Outcome) -> None:
        if job.retry_of is not None:
            outcome.notes.append(f"run again after a worker died; first try kept in {job.retry_of}")
        self.outcomes[job.index] = outcome
        self.progress(f"[{job.spec.name}] {outcome.status} in {outcome.seconds:.2f}s")

    def _stop(self) -> None:
        """Ctrl-C: kill the busy workers, then record their runs as interrupted."""
        self.progress(f"interrupted: stopping {len(self.busy)} busy worker(s)")
        for slot in self.busy.values():
            self.ray.kill(slot.actor, no_restart=True)
        self.ray.wait(list(self.busy), num_returns=len(self.busy), timeout=STOP_WAIT_S)
        for slot in self.busy.values():
            job = slot.job
            assert job is not None
            orphan.close(job.run_dir, job.spec, "interrupted", "interrupted")
            stopped = pending(job.spec)
            stopped.status, stopped.run_dir = "interrupted", job.run_dir
            if job.index in self.followed:
                stopped.seconds = round(time.perf_counter() - self.followed[job.index].began, 3)
            self.outcomes[job.index] = stopped
        self.busy.clear()


def _failed(job: Job, message: str, run_dir: Path | None) -> Outcome:
    outcome = pending(job.spec)
    outcome.status, outcome.message, outcome.run_dir = "failed", message, run_dir
    return outcome


def _reason(exc: BaseException) -> str:
    """The last line of a Ray error: the exception a worker raised, under its traceback."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
