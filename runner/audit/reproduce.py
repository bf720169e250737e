"""Run a recorded spec again, under the recorded settings, and compare every output."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from runner.audit import diff as audit
from runner.backends.base import Ticker
from runner.record import manifest as m
from runner.running.interpreter import Overrides, execute
from runner.spec.load import load


def reproduce(
    run_dir: Path,
    out: Path | None,
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,
) -> tuple[Path, audit.DiffReport]:
    """Execute RUN_DIR's spec.yaml with its recorded name, seed, device, dtype and threads.

    Relative paths in the spec resolve against the original spec's folder, as they did.
    Returns the new run directory and its comparison with the old one.
    """
    recorded = m.read(run_dir)
    spec = load(run_dir / "spec.yaml", base_dir=Path(recorded.spec.base_dir))
    # A spec without `name:` was named after its file, which is spec.yaml in a run directory.
    spec = dataclasses.replace(spec, name=recorded.spec.name)
    settings = recorded.settings
    overrides = (
        Overrides(settings.device, settings.dtype, settings.threads) if settings else Overrides()
    )
    new_run = execute(spec, out or run_dir.parent, overrides, progress, ticker)
    return new_run, audit.diff(run_dir, new_run)
