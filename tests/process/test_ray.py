"""`--ray` on a local Ray with CPU workers: the same bytes as a sequential run, a dead worker's
spec run again, Ctrl-C recorded. Few and small: each Ray start costs seconds."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from commands import EXE

import runner
from runner import builtin

TEXT = """\
version: 1
name: {name}
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
defaults:
  generate: {{max_new_tokens: 6}}
steps:
  - {{op: generate, id: base, prompt: [the cat, once upon a time], seed: {seed}}}
  - {{op: load, adapters: a}}
  - {{op: generate, id: styled, prompt: the cat, seed: {seed}}}
"""
IMAGE = """\
version: 1
name: image
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
steps:
  - {op: generate, id: base, prompt: a cat, num_inference_steps: 2}
  - {op: load, adapters: a}
  - {op: generate, id: styled, prompt: [a cat, a dog], num_inference_steps: 2}
"""


def long_spec(folder: Path, name: str, steps: int = 40) -> Path:
    body = "".join(
        f"  - {{op: generate, id: g{i}, prompt: the cat {i}, max_new_tokens: 48}}\n"
        for i in range(steps)
    )
    file = folder / f"{name}.yaml"
    file.write_text(
        f"version: 1\nname: {name}\ndevice: cpu\n"
        f"model: {{family: transformers, path: builtin:tiny-causal-lm}}\nsteps:\n{body}"
    )
    return file


def files(run: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted((run / "outputs").rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_outputs_are_the_sequential_runs_outputs(local_ray: None, tmp_path: Path) -> None:
    specs = []
    for name, text in [
        ("first", TEXT.format(name="first", seed=1)),
        ("image", IMAGE),
        ("second", TEXT.format(name="second", seed=2)),
    ]:
        specs.append(tmp_path / f"{name}.yaml")
        specs[-1].write_text(text)
    on_ray = runner.run_many(specs, out=tmp_path / "ray", ray=True, workers=2)
    alone = runner.run_many(specs, out=tmp_path / "seq")
    assert [o.status for o in on_ray.outcomes] == ["succeeded"] * 3, on_ray.outcomes
    for a, b in zip(on_ray.outcomes, alone.outcomes, strict=True):
        assert a.run_dir is not None and b.run_dir is not None
        assert a.run_dir.parent == (tmp_path / "ray").resolve()
        assert files(a.run_dir) == files(b.run_dir), a.spec
        assert runner.verify(a.run_dir).ok
    manifests = [runner.open_run(o.run_dir).manifest for o in on_ray.outcomes if o.run_dir]
    workers = {mf.spec.name: mf.origin.worker for mf in manifests}
    assert all(w and w.endswith(tuple("0123456789")) for w in workers.values())
    assert workers["first"] == workers["second"] != workers["image"]
    reused = {mf.spec.name: mf.origin.model_reused_from for mf in manifests}
    assert reused == {"first": None, "image": None, "second": str(on_ray.outcomes[0].run_dir)}


def test_a_dead_workers_spec_is_recorded_and_run_again(local_ray: None, tmp_path: Path) -> None:
    doomed, other = long_spec(tmp_path, "doomed", 16), long_spec(tmp_path, "other", steps=2)
    (tmp_path / "broken-adapter").mkdir()
    config = builtin.resolve("tiny-causal-lm-lora-a") / "adapter_config.json"
    (tmp_path / "broken-adapter" / "adapter_config.json").write_bytes(config.read_bytes())
    (tmp_path / "broken-adapter" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        TEXT.format(name="broken", seed=0).replace(
            "builtin:tiny-causal-lm-lora-a", "./broken-adapter"
        )
    )
    out = tmp_path / "runs"
    killed: list[Path] = []

    def kill_the_worker_of_doomed() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for run in out.glob("doomed-*"):
                journal = run / "journal.jsonl"
                if journal.is_file() and journal.read_bytes().count(b"\n") >= 2:
                    worker = json.loads((run / "manifest.json").read_text())["origin"]["worker"]
                    os.kill(int(worker.rpartition(":")[2]), signal.SIGKILL)
                    killed.append(run)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker_of_doomed)
    killer.start()
    lines: list[str] = []
    many = runner.run_many(
        [doomed, other, broken], out=out, ray=True, workers=2, progress=lines.append
    )
    killer.join()
    assert killed, "the doomed run never got going"
    first = killed[0]
    outcome = many.outcomes[0]
    assert [o.status for o in many.outcomes] == ["succeeded", "succeeded", "failed"]
    assert "adapter 'a'" in many.outcomes[2].message  # a failing spec is reported, no retry
    assert many.outcomes[2].run_dir is not None
    assert runner.open_run(many.outcomes[2].run_dir).status == "failed"
    assert outcome.run_dir is not None and outcome.run_dir != first
    assert any(str(first) in note for note in outcome.notes)
    dead = runner.open_run(first)
    assert dead.status == "failed" and dead.manifest.error is not None
    assert "died" in dead.manifest.error.message
    finished = [s for s in dead.manifest.steps if s.status == "ok"]
    assert 2 <= len(finished) < 16
    assert runner.verify(dead).ok
    retry = runner.open_run(outcome.run_dir)
    assert retry.manifest.origin.retry_of == str(first)
    assert retry.manifest.origin.worker != dead.manifest.origin.worker
    again = files(retry.dir)
    assert all(again[path] == data for path, data in files(first).items() if path in again)
    assert len(again) == 16


def test_ctrl_c_stops_the_cluster_and_keeps_what_finished(tmp_path: Path) -> None:
    # Three specs on one model: the second worker joins the group, the third spec waits.
    specs = [str(long_spec(tmp_path, name, steps=400)) for name in ("one", "two", "three")]
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [str(EXE), "run", *specs, "--ray", "--workers", "2", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        journals = [j for j in out.glob("*/journal.jsonl") if j.read_bytes().count(b"\n") >= 1]
        if len(journals) == 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    runs = sorted(out.iterdir())
    assert len(runs) == 2
    for run in runs:
        stopped = runner.open_run(run)
        assert stopped.status == "interrupted"
        assert 1 <= len(stopped.manifest.steps) < 400
        assert runner.verify(stopped).ok
        (row,) = [line for line in stdout.splitlines() if str(run) in line]
        assert row.split()[1] == "interrupted"
        assert float(row.split()[2]) > 0, row  # the seconds it ran, not 0.00
        assert f"  runner run --resume {run}" in stderr.splitlines()
    (waiting,) = [line for line in stdout.splitlines() if " not run " in line]
    assert waiting.split()[0] in specs
    assert f"  runner run {waiting.split()[0]} --out {out}" in stderr.splitlines()
    # the workers' steps arrived as they finished, read from their journals
    assert re.search(r"^\[(one|two)\] step 1/400 generate +\d+\.\d\ds$", stderr, flags=re.M)
