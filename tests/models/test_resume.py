"""`runner run --resume RUN_DIR`: a stopped run continued gives what an uninterrupted run gives."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from commands import invoke

import runner
from runner import builtin

TEXT = """\
version: 1
name: resumable
device: cpu
seed: 2
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: ./adapter-a}
  b: {path: builtin:tiny-causal-lm-lora-b}
defaults:
  generate: {max_new_tokens: 6}
steps:
  - {op: generate, id: base, prompt: [the cat, once upon a time]}
  - {op: load, adapters: [a, b]}
  - {op: generate, id: only-b, prompt: the cat}
  - {op: set_adapters, adapters: {a: 0.5, b: 1.5}}
  - {op: generate, id: mix, prompt: the cat}
  - {op: disable}
  - {op: generate, id: disabled, prompt: the cat}
  - {op: enable}
  - {op: generate, id: enabled, prompt: [the cat, a dog]}
"""

IMAGE = """\
version: 1
name: pictures
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
defaults:
  generate: {num_inference_steps: 2, num_images_per_prompt: 2}
steps:
  - {op: generate, id: base, prompt: a cat}
  - {op: load, adapters: a}
  - {op: generate, id: styled, prompt: a cat}
  - {op: set_adapters, adapters: {a: 0.5}}
  - {op: generate, id: half, prompt: [a cat, a dog]}
"""


def stop_after(step: int) -> Callable[[str], None]:
    """A progress callback that interrupts the run once STEP has finished, as Ctrl-C would."""

    def progress(line: str) -> None:
        if line.startswith(f"step {step}/"):
            raise runner.Interrupted("SIGINT")

    return progress


def files(run: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted((run / "outputs").rglob("*"))
        if p.is_file()
    }


def stopped_run(spec: Path, out: Path, after: int) -> Path:
    with pytest.raises(runner.Interrupted) as stopped:
        runner.run(spec, out=out, progress=stop_after(after))
    assert stopped.value.run_dir is not None
    return stopped.value.run_dir


@pytest.fixture()
def text_spec(tmp_path: Path) -> Path:
    shutil.copytree(builtin.resolve("tiny-causal-lm-lora-a"), tmp_path / "adapter-a")
    spec = tmp_path / "resumable.yaml"
    spec.write_text(TEXT)
    return spec


def test_a_resumed_run_is_the_uninterrupted_run(text_spec: Path, tmp_path: Path) -> None:
    full = runner.run(text_spec, out=tmp_path / "full")
    stopped = stopped_run(text_spec, tmp_path / "runs", after=5)
    assert runner.open_run(stopped).status == "interrupted"
    assert len(files(stopped)) == 3

    code, out, err = invoke("run", "--resume", str(stopped))
    assert code == 0, err
    resumed = Path(out.strip())
    assert resumed.parent == stopped.parent and resumed != stopped
    assert files(resumed) == files(full.dir)
    manifest = runner.open_run(resumed).manifest
    assert manifest.status == "succeeded"
    assert manifest.origin.resumed_from == str(stopped)
    taken = [s.id for s in manifest.steps if s.execution.get("outputs_from") == str(stopped)]
    assert taken == ["base", "only-b", "mix"]
    assert len([line for line in err.splitlines() if "taken from" in line]) == 3
    report = runner.diff(full, resumed)
    assert report.same, report.format_text()
    assert runner.verify(resumed).ok
    code, said, _ = invoke("diff", str(full.dir), str(resumed))
    assert code == 0 and "runs are the same" in said


def test_an_output_changed_since_is_made_again(text_spec: Path, tmp_path: Path) -> None:
    full = runner.run(text_spec, out=tmp_path / "full")
    stopped = stopped_run(text_spec, tmp_path / "runs", after=3)
    target = stopped / "outputs/03-only-b/completions.jsonl"
    target.write_bytes(target.read_bytes().replace(b'"the cat"', b'"the dog"'))
    lines: list[str] = []
    resumed = runner.resume(stopped, progress=lines.append)
    assert any("03-only-b/completions.jsonl changed" in line for line in lines)
    assert files(resumed.dir) == files(full.dir)
    taken = [s.id for s in resumed.manifest.steps if s.execution.get("outputs_from")]
    assert taken == ["base"]


def test_a_changed_spec_or_input_refuses_to_resume(text_spec: Path, tmp_path: Path) -> None:
    stopped = stopped_run(text_spec, tmp_path / "runs", after=1)
    text_spec.write_text(TEXT.replace("max_new_tokens: 6", "max_new_tokens: 7"))
    code, _, err = invoke("run", "--resume", str(stopped))
    assert code == 1
    assert "changed since it ran" in err
    assert "-  generate: {max_new_tokens: 6}" in err and "+  generate: {max_new_tokens: 7}" in err
    text_spec.write_text(TEXT)

    weights = tmp_path / "adapter-a" / "adapter_model.safetensors"
    stopped = stopped_run(text_spec, tmp_path / "runs", after=3)
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    code, _, err = invoke("run", "--resume", str(stopped))
    assert code == 1
    assert "adapter 'a' file adapter_model.safetensors: sha256" in err
    assert len(list((tmp_path / "runs").iterdir())) == 2  # nothing new was started


def test_a_finished_run_has_nothing_to_resume(text_spec: Path, tmp_path: Path) -> None:
    done = runner.run(text_spec, out=tmp_path / "runs")
    code, _, err = invoke("run", "--resume", str(done.dir))
    assert code == 1 and "nothing to resume" in err


def test_a_resumed_image_run_is_the_uninterrupted_run(tmp_path: Path) -> None:
    spec = tmp_path / "pictures.yaml"
    spec.write_text(IMAGE)
    full = runner.run(spec, out=tmp_path / "full")
    stopped = stopped_run(spec, tmp_path / "runs", after=3)
    spec.unlink()  # the run's own copy of the spec serves
    resumed = runner.resume(stopped)
    assert sorted(files(resumed.dir)) == sorted(files(full.dir))
    assert files(resumed.dir) == files(full.dir)
    assert runner.diff(full, resumed).same
