"""A run stopped by SIGINT or SIGTERM from outside: the real program, a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from commands import EXE, invoke, spec_file


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_finished_outputs_and_a_verifiable_run(tmp_path: Path, signum: int) -> None:
    steps = "".join(
        f"  - op: generate\n    id: g{i}\n    prompt: the cat\n    max_new_tokens: 48\n"
        for i in range(40)
    )
    spec = spec_file(
        tmp_path,
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        f"steps:\n{steps}",
    )
    proc = subprocess.Popen(
        [str(EXE), "run", str(spec), "--out", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # step 3's output: step 2's journal line is written by then
        if list(tmp_path.glob("runs/*/outputs/03-g2/completions.jsonl")):
            break
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run,) = (tmp_path / "runs").iterdir()
    assert out.strip() == str(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    done = [s for s in manifest["steps"] if s["status"] == "ok"]
    assert len(done) >= 2 and len(done) < 40
    assert all((run / o["path"]).is_file() for s in done for o in s["outputs"])
    code, report, _ = invoke("verify", str(run))
    assert code == 0, report
