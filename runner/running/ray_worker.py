"""What one Ray worker does: run specs one at a time, keeping its base model loaded.

A plain class: `ray_pool` makes it a Ray actor, so this module imports no Ray.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from runner.record import manifest as m
from runner.running.interpreter import Overrides, Setup
from runner.running.many import Outcome, pending, run_one
from runner.running.models import ModelCache
from runner.spec.types import Spec

# A shared filesystem may show a new folder to other machines a moment later (NFS caches).
SEE_WITHIN_S = 10.0


@dataclass
class Job:
    """One spec for a worker, with the run directory the driver made for it under OUT."""

    index: int  # the spec's place in the command line
    spec: Spec
    out: Path
    run_dir: Path
    overrides: Overrides
    attempt: int = 1
    retry_of: Path | None = None  # the run directory a dead worker left


def cannot_see(worker: str, job: Job) -> str:
    return (
        f"the Ray worker {worker} cannot see {job.run_dir}, which the driver made under "
        f"the out folder {job.out}, which must be a folder every worker sees (a shared filesystem)"
    )


class Worker:
    """A Ray actor's state: one kept model, and the name of the process it runs in."""

    def __init__(self, omp_num_threads: str | None) -> None:
        # Ray pins OMP_NUM_THREADS to the actor's CPUs. On a CPU, the thread count changes
        # pixels, so torch (not imported yet) must start with the threads a plain process
        # on this node starts with, as the driver's environment says.
        if omp_num_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp_num_threads
        self.models = ModelCache()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def describe(self) -> str:
        return self.name

    def run(self, job: Job) -> Outcome:
        """JOB into the run directory the driver made; a folder this worker cannot see
        fails the spec with that reason."""
        deadline = time.monotonic() + SEE_WITHIN_S
        while not job.run_dir.is_dir():
            if time.monotonic() > deadline:
                outcome = pending(job.spec)
                outcome.status, outcome.message = "failed", cannot_see(self.name, job)
                return outcome
            time.sleep(0.5)
        origin = m.Origin(worker=self.name, retry_of=str(job.retry_of) if job.retry_of else None)
        setup = Setup(run_dir=job.run_dir, origin=origin)
        return run_one(job.spec, job.out, job.overrides, self.models, lambda line: None, setup)
