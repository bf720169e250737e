"""runner: a declarative pipeline-spec runner for PEFT adapters.

    problems = runner.validate("spec.yaml")      # [] when valid, else located problems
    spec = runner.load_spec("spec.yaml")         # or a dict; raises runner.SpecError
    run = runner.run(spec, out="runs")           # -> runner.Run; raises runner.StepError
    many = runner.run_many([a, b], out="runs")   # several specs; ray=True spreads them over Ray
    again = runner.resume(stopped.dir)           # continue a failed or interrupted run
    run.dir, run.status, run.manifest, run.outputs["blend"], run.cells("styles")
    again = runner.open_run(run.dir)             # any run directory, no model loaded
    runner.verify(again).ok, runner.diff(run, again).same
    runner.reproduce(run.dir).same                 # run again with the recorded settings

Importing runner, or calling validate, load_spec, open_run, verify or diff, loads no
deep-learning library.
"""

from __future__ import annotations

from runner.api import (
    Reproduction,
    Run,
    diff,
    load_spec,
    open_run,
    reproduce,
    resume,
    run,
    run_many,
    validate,
    verify,
    write_report,
)
from runner.errors import (
    Interrupted,
    Located,
    Refused,
    RunDirError,
    RunnerError,
    SpecError,
    StepError,
)
from runner.meta import DISTRIBUTION, __version__, cache_home

__all__ = [
    "DISTRIBUTION",
    "Interrupted",
    "Located",
    "Refused",
    "Reproduction",
    "Run",
    "RunDirError",
    "RunnerError",
    "SpecError",
    "StepError",
    "__version__",
    "cache_home",
    "diff",
    "load_spec",
    "open_run",
    "reproduce",
    "resume",
    "run",
    "run_many",
    "validate",
    "verify",
    "write_report",
]
