"""A step's peak memory: the kernel's high-water mark reset at the step's start, typed in
the record, read back from records that lack it, shown on the report page."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runner.backends.memory import Peak
from runner.record import manifest as m
from runner.record.layout import JOURNAL
from runner.report.sections import step_section

MIB = 2**20


@pytest.mark.skipif(sys.platform != "linux", reason="the high-water mark resets on Linux only")
def test_a_step_that_allocates_records_a_higher_peak_than_the_next_that_does_not() -> None:
    big = Peak("cpu")
    blob = b"\1" * (256 * MIB)  # every page written: resident
    del blob
    allocating = big.read()
    quiet = Peak("cpu").read()
    assert allocating.peak_rss_since == quiet.peak_rss_since == "step"
    # ru_maxrss (the process's peak) would give the second step the first one's peak
    assert allocating.peak.rss_bytes - quiet.peak.rss_bytes >= 200 * MIB
    assert 10 * MIB < quiet.peak.rss_bytes < allocating.peak.rss_bytes
    assert allocating.peak.cuda_allocated_bytes is None  # not on CUDA


def _record(**fields: object) -> m.StepRecord:
    return m.StepRecord(index=1, op="delete", line=9, status="ok", seconds=0.5, **fields)  # type: ignore[arg-type]


def test_memory_round_trips_and_records_without_it_still_read(tmp_path: Path) -> None:
    memory = m.StepMemory(
        m.MemoryUse(900 * MIB, 40 * MIB),
        before=m.MemoryUse(800 * MIB, 30 * MIB),
        after=m.MemoryUse(780 * MIB, 26 * MIB),
    )
    line = json.loads(m.journal_line(_record(memory=memory)))
    older = {k: v for k, v in line.items() if k != "memory"}
    older["execution"] = {"memory_before": {"rss_bytes": 1}, "freed": {"rss_bytes": 1}}
    (tmp_path / JOURNAL).write_text(f"{json.dumps(line)}\n{json.dumps(older)}\n")
    new, old = m.read_journal(tmp_path)
    assert new.memory == memory
    assert old.memory is None and old.execution["freed"] == {"rss_bytes": 1}


def test_the_report_shows_the_peak_and_what_a_delete_freed(tmp_path: Path) -> None:
    memory = m.StepMemory(
        m.MemoryUse(900 * MIB, 40 * MIB),
        before=m.MemoryUse(800 * MIB, 30 * MIB),
        after=m.MemoryUse(780 * MIB, 26 * MIB),
    )
    page = step_section(tmp_path, _record(memory=memory, arguments={"adapters": ["a"]}))
    assert "peak RSS 900.0 MiB, CUDA 40.0 MiB" in page
    assert "freed RSS 20.0 MiB, CUDA 4.0 MiB" in page
    assert "RSS 800.0 MiB, CUDA 30.0 MiB before, RSS 780.0 MiB, CUDA 26.0 MiB after" in page
    process = m.StepMemory(m.MemoryUse(900 * MIB), peak_rss_since="process")
    assert "(RSS: the run&#x27;s so far)" in step_section(tmp_path, _record(memory=process))
    assert "peak" not in step_section(tmp_path, _record())
