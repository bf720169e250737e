"""Run a recorded spec again, under the recorded settings, into a new run directory.

What it gives is compared with the old run by the caller (runner.reproduce, through
runner.audit); settings become overrides as they do for a resume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from runner.backends.base import Ticker
from runner.errors import Refused
from runner.record import layout
from runner.record import manifest as m
from runner.record.trust import SPEC_LIMIT, read_run_file
from runner.running.interpreter import execute
from runner.running.resume import data_changes, recorded_settings
from runner.spec.load import load_bytes


def reproduce(
    run_dir: Path,
    out: Path | None,
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,
) -> Path:
    """Execute RUN_DIR's spec.yaml with its recorded name, seed, device, dtype and threads.

    Relative paths in the spec resolve against the original spec's folder, as they did.
    Returns the new run directory.
    """
    recorded = m.read(run_dir)
    raw = read_run_file(run_dir, layout.SPEC, SPEC_LIMIT)
    spec = load_bytes(raw, run_dir / layout.SPEC, Path(recorded.spec.base_dir))
    # A spec without `name:` was named after its file, which is spec.yaml in a run directory.
    spec = dataclasses.replace(spec, name=recorded.spec.name)
    changed = data_changes(spec, recorded)
    if changed:  # the same spec on other records is no reproduction; refused before it runs
        raise Refused(f"cannot reproduce {run_dir}: " + "; ".join(changed))
    return execute(spec, out or run_dir.parent, recorded_settings(recorded), progress, ticker)
