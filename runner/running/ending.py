"""The end of a run, one sequence wherever a run ends: the manifest whole, the report page
from the manifest as it reads back (so `runner report` gives the same page), then every
file on disk and SHA256SUMS over them. A run ends through `finish`; a parent closes a run
whose process died through `runner.running.orphan`, which ends it the same way.
"""

from __future__ import annotations

import json

from runner.record import layout
from runner.record import manifest as m
from runner.record.recorder import Recorder, attempt
from runner.report.html import page


def finish(recorder: Recorder, status: str, error: m.Failure | None = None) -> None:
    """Record the end of RECORDER's run with STATUS (and ERROR), its report and SHA256SUMS.

    A run that succeeded raises the first write that fails. A run that failed records what
    it can: where the disk is full, each part is tried and what cannot be written is left
    (the journal stays while the manifest could not take its steps).
    """
    strict = status == "succeeded"
    written = attempt(lambda: recorder.end(status, error), strict)
    record = m.parse(json.loads(written or m.manifest_bytes(recorder.manifest)))
    attempt(lambda: recorder.write(layout.REPORT, page(recorder.run, record)), strict)
    recorder.seal(strict, journal_served=written is not None)
