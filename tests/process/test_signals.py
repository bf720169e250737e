"""A run stopped by SIGINT or SIGTERM from outside: the real program, a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from hashlib import sha256
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


TRAIN = """\
version: 1
name: interrupted-training
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  fresh: {config: {type: lora, r: 8, lora_alpha: 16, lora_dropout: 0.1, target_modules: [q_proj, v_proj]}}
data:
  space: {path: space.jsonl}
steps:
  - {op: load, adapters: fresh}
  - op: train
    id: trained
    adapter: fresh
    prompt: {data: space, field: prompt}
    completion: {data: space, field: completion}
    steps: STEPS
    batch_size: 4
    max_length: 32
    learning_rate: 1.0e-3
    checkpoint_every: 2
"""
RECORDS = [
    ("The cat", " landed a rocket on the moon."),
    ("The dog", " flew up to the bright stars."),
    ("A little bird", " counted the stars of the galaxy."),
    ("The farmer", " built a ship to sail the sky."),
]


def test_a_train_step_stopped_by_sigint_resumes_to_the_same_adapter(tmp_path: Path) -> None:
    """Ctrl-C in the middle of training keeps its last checkpoint; `--resume` continues
    from it and ends with the adapter bytes of a run that never stopped."""
    (tmp_path / "space.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in RECORDS)
    )
    spec = spec_file(tmp_path, TRAIN.replace("STEPS", "40"))
    proc = subprocess.Popen(
        [str(EXE), "run", str(spec), "--out", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if list(tmp_path.glob("runs/*/outputs/02-trained/checkpoint.json")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = Path(out.strip())
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [s["status"] for s in manifest["steps"]] == ["ok", "interrupted"]
    state = json.loads((stopped / "outputs/02-trained/checkpoint.json").read_text())
    assert 2 <= state["steps_done"] < 40 and state["steps_done"] % 2 == 0
    code, report, _ = invoke("verify", str(stopped))
    assert code == 0, report

    code, out, err = invoke("run", "--resume", str(stopped))
    assert code == 0, err
    assert f"training continues from the checkpoint of step {state['steps_done']}" in err
    resumed = Path(out.strip())
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "straight"))
    assert code == 0, err
    straight = Path(out.strip())
    for name in ("adapter_model.safetensors", "loss.jsonl"):
        a, b = (run / "outputs/02-trained" / name for run in (resumed, straight))
        assert sha256(a.read_bytes()).hexdigest() == sha256(b.read_bytes()).hexdigest(), name
    assert not (resumed / "outputs/02-trained/checkpoint.json").exists()
