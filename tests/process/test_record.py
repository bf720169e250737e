"""The run record: the step journal, killed runs, the typed manifest and the Python API."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import EXE, spec_file

import runner
from runner.record import manifest as m

LM = "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"


def steps(n: int, tokens: int = 1) -> str:
    return "".join(
        f"  - op: generate\n    id: g{i}\n    prompt: the cat {i}\n    max_new_tokens: {tokens}\n"
        for i in range(n)
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(EXE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(pattern: str, root: Path, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if list(root.glob(pattern)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared")


def test_a_killed_run_keeps_exactly_its_finished_steps_and_verify_says_so(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, LM + "steps:\n" + steps(60, tokens=24))
    proc = start("run", str(spec), "--out", str(tmp_path / "runs"))
    wait_for("runs/*/outputs/04-g3/completions.jsonl", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "SHA256SUMS").exists()
    manifest = runner.open_run(run).manifest
    assert manifest.status == "running" and not manifest.finished
    recorded = [s.index for s in manifest.steps]
    # killed once step 4's output existed: its journal line may or may not have followed
    assert recorded == list(range(1, len(recorded) + 1)) and len(recorded) >= 3
    written = sorted(p.parent.name for p in run.glob("outputs/*/completions.jsonl"))
    # every recorded step's output is there; at most the step being written when killed is not
    assert [f"{i:02d}-g{i - 1}" for i in recorded] == written[: len(recorded)]
    assert len(written) - len(recorded) in (0, 1)
    for step in manifest.steps:
        (out,) = step.outputs
        assert m.Output(out.path, out.sha256) == out
    done = subprocess.run([str(EXE), "verify", str(run)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "did not finish" in done.stdout
    assert f"finished steps: {', '.join(map(str, recorded))};" in done.stdout
    assert "are intact" in done.stdout
    # a finished output changed after the kill is named
    first = run / manifest.steps[0].outputs[0].path
    first.write_text(first.read_text().replace("the cat", "the dog"))
    again = subprocess.run([str(EXE), "verify", str(run)], capture_output=True, text=True)
    assert again.returncode == 1 and f"changed: {manifest.steps[0].outputs[0].path}" in again.stdout


def test_the_manifest_of_a_long_spec_holds_every_step_once_and_the_journal_is_gone(
    tmp_path: Path,
) -> None:
    spec = spec_file(tmp_path, LM + "steps:\n" + steps(40))
    done = runner.run(spec, out=tmp_path / "runs")
    assert done.status == "succeeded"
    assert gc.get_freeze_count() == 0  # the heap frozen while the steps ran is thawed
    assert not (done.dir / m.JOURNAL).exists()
    data = json.loads((done.dir / "manifest.json").read_text())
    assert [s["index"] for s in data["steps"]] == list(range(1, 41))
    # the manifest on disk is exactly the typed record written once, at the end
    assert (done.dir / "manifest.json").read_bytes() == m.manifest_bytes(m.parse(data))
    sums = (done.dir / "SHA256SUMS").read_text()
    assert "journal" not in sums and sums.count("completions.jsonl") == 40
    assert runner.verify(done).ok


def test_ctrl_c_during_reproduce_exits_130_and_keeps_the_new_run(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, LM + "steps:\n" + steps(40, tokens=32))
    original = runner.run(spec, out=tmp_path / "first")
    proc = start("reproduce", str(original.dir), "--out", str(tmp_path / "again"))
    wait_for("again/*/outputs/02-g1/completions.jsonl", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    (new,) = (tmp_path / "again").iterdir()
    assert runner.open_run(new).status == "interrupted"
    assert new.name.startswith("spec-")  # the recorded name, which was the file's stem


def test_reproduce_keeps_the_recorded_name(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = folder / "my-Sweep.yaml"
    spec.write_text(LM + "steps:\n" + steps(1))
    first = runner.run(spec, out=tmp_path / "runs")
    assert first.manifest.spec.name == "my-sweep"
    done = subprocess.run([str(EXE), "reproduce", str(first.dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name.split("-2")[0] for p in (tmp_path / "runs").iterdir())
    assert names == ["my-sweep", "my-sweep"]


@pytest.mark.parametrize("where", ["file", "under-a-file", "read-only"])
def test_an_unusable_out_folder_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    spec = spec_file(tmp_path, LM + "steps:\n" + steps(1))
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = {
        "file": blocker,
        "under-a-file": blocker / "runs",
        "read-only": tmp_path / "ro",
    }[where]
    if where == "read-only":
        out.mkdir(mode=0o500)
    done = subprocess.run(
        [str(EXE), "run", str(spec), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: out folder {out}:"), done.stderr


def test_the_python_api_runs_opens_verifies_and_diffs(tmp_path: Path) -> None:
    spec = {
        "version": 1,
        "name": "api",
        "device": "cpu",
        "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
        "adapters": {"a": {"path": "builtin:tiny-causal-lm-lora-a"}},
        "steps": [
            {"op": "load", "adapters": "a"},
            {"op": "generate", "id": "blend", "prompt": ["the cat", "a dog"], "max_new_tokens": 4},
        ],
    }
    assert runner.validate(spec) == []
    bad = runner.validate({**spec, "seed": -1})
    assert [(p.path, p.line) for p in bad] == [("seed", 0)]  # a dict has no lines
    assert str(bad[0]).startswith("<dict>: seed: ")
    done = runner.run(runner.load_spec(spec), out=tmp_path)
    texts = done.outputs["blend"]
    assert [t.prompt for t in texts] == ["the cat", "a dog"]
    assert all(t.token_ids and t.adapters == {"a": 1.0} for t in texts)
    again = runner.open_run(done.dir)
    assert again.manifest == done.manifest and again.outputs == done.outputs
    assert runner.verify(again).ok
    assert runner.diff(done, again).same


def test_the_api_loads_no_deep_learning_library(tmp_path: Path) -> None:
    code = (
        "import sys, runner\n"
        f"print(runner.validate({str(tmp_path / 'missing.yaml')!r})[0].message)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'peft') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_heap_the_caller_froze_stays_frozen(tmp_path: Path) -> None:
    gc.freeze()
    try:
        assert (
            runner.run(spec_file(tmp_path, LM + "steps:\n" + steps(1)), out=tmp_path).status
            == "succeeded"
        )
        assert gc.get_freeze_count() > 0  # not thawed by the run (objects may have died)
    finally:
        gc.unfreeze()
