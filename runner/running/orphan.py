"""Finish the record of a run whose process died: what a parent does for a killed worker.

A run killed outright (a Ray worker that died, or one the parent stopped) leaves
`status: running` and a journal of its finished steps. Whoever started it closes it:
the manifest gets the journal's steps, an end, a status and a reason, and SHA256SUMS is
written over what is there, so the run verifies like any stopped run.
"""

from __future__ import annotations

from pathlib import Path

from runner.record import layout
from runner.record import manifest as m
from runner.record.recorder import Recorder
from runner.running.ending import finish
from runner.spec.types import Spec


def close(run_dir: Path, spec: Spec, status: str, message: str) -> None:
    """Record RUN_DIR as ended with STATUS (failed or interrupted) because of MESSAGE.

    A run that recorded its own end is left as it is; a folder made for a run whose process
    died before its first record gets a record of its own, so none is left empty.
    """
    if not (run_dir / layout.MANIFEST).exists():  # killed before its first record
        recorder = Recorder.start(run_dir.parent, spec, folder=run_dir)
        finish(recorder, status, m.Failure(0, spec.where(0), message))
        return
    manifest = m.read(run_dir)
    if manifest.finished:
        return
    index = _stopped_at(manifest, len(spec.steps))
    finish(Recorder(run_dir, manifest), status, m.Failure(index, spec.where(index), message))


def _stopped_at(manifest: m.Manifest, total: int) -> int:
    """The step that was running: one the journal records as stopped, else the next one;
    0 while the model was loading."""
    steps = manifest.steps
    if steps and steps[-1].status != "ok":
        return steps[-1].index
    if not steps and manifest.settings is None:
        return 0
    return min(len(steps) + 1, total)
