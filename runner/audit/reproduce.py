"""Run a recorded spec again, under the recorded settings, and compare every output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runner.audit import diff as audit
from runner.audit.outputs import load_manifest
from runner.backends import Ticker
from runner.run.interpreter import Overrides, execute
from runner.spec.load import load


def reproduce(
    run_dir: Path,
    out: Path | None,
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,
) -> tuple[Path, audit.DiffReport]:
    """Execute RUN_DIR's spec.yaml with its recorded seed, device, dtype and thread count.

    Relative paths in the spec resolve against the original spec's folder, as they did.
    Returns the new run directory and its comparison with the old one.
    """
    manifest = load_manifest(run_dir)
    recorded = manifest.get("spec", {})
    base = recorded.get("base_dir") or str(Path(recorded.get("file", run_dir / "spec.yaml")).parent)
    spec = load(run_dir / "spec.yaml", base_dir=Path(base))
    settings = manifest.get("settings", {})
    overrides = Overrides(settings.get("device"), settings.get("dtype"), settings.get("threads"))
    new_run = execute(spec, out or run_dir.parent, overrides, progress, ticker)
    return new_run, audit.diff(run_dir, new_run)
