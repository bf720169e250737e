"""Peak memory per step in a real run: every step has it, a step drawing a bigger image
records a higher peak than the small one after it, a delete records what it freed, and the
report page shows both."""

from __future__ import annotations

from pathlib import Path

import runner
from runner.record import layout

MIB = 2**20


def test_each_step_records_its_peak_and_delete_what_it_freed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    draw = "prompt: cat, num_inference_steps: 1"
    spec.write_text(
        "version: 1\nseed: 5\ndevice: cpu\n"
        "model: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        f"  - {{op: generate, id: big, {draw}, height: 320, width: 320}}\n"
        f"  - {{op: generate, id: small, {draw}, height: 32, width: 32}}\n"
        "  - {op: delete, id: delete, adapters: a}\n"
    )
    import torch

    # What other work freed and malloc kept, as after other tests in this process: without
    # the trim before each step's mark, the big step is served from these pages and shows
    # no peak of its own.
    pieces = [torch.ones(25_000) for _ in range(8_000)]  # 800 MB in pieces below mmap's
    del pieces
    run = runner.run(spec, out=tmp_path / "runs")
    load, big, small, delete = run.manifest.steps
    for step in run.manifest.steps:
        assert step.memory is not None and step.memory.peak_rss_since == "step"
        assert 50 * MIB < step.memory.peak.rss_bytes < 64 * 2**30
    assert big.memory and small.memory and delete.memory
    # the mark is reset per step: the small image's peak is not the big one's
    assert big.memory.peak.rss_bytes > small.memory.peak.rss_bytes + 30 * MIB
    before, after = delete.memory.before, delete.memory.after
    assert before is not None and after is not None
    assert before.rss_bytes > 50 * MIB and after.rss_bytes > 50 * MIB
    assert delete.memory.peak.rss_bytes >= after.rss_bytes
    assert "memory_before" not in delete.execution  # one home: the typed record
    page = (run.dir / layout.REPORT).read_text()
    assert f"peak {big.memory.peak.shown()}" in page
    assert f"freed {before.minus(after).shown()}" in page
