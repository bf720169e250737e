"""`runner run` end to end on builtin models: the run directory, exit codes, failures, audits."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from commands import invoke, spec_file

SPEC = """\
version: 1
name: text
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  b: {path: builtin:tiny-causal-lm-lora-b}
defaults:
  generate: {max_new_tokens: 6}
steps:
  - op: generate
    id: base
    prompt: [the cat, once upon a time]
  - op: load
    adapters: [a, b]
  - op: set_adapters
    adapters: {a: 0.5, b: 0.5}
  - op: generate
    prompt: the cat
  - op: disable
  - op: generate
    id: disabled
    prompt: the cat
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    code, out, err = invoke("run", str(spec_file(tmp, SPEC)), "--out", str(tmp / "runs"))
    assert code == 0, err
    return Path(out.strip())


def test_run_directory_holds_what_the_contract_says(finished: Path) -> None:
    assert finished.name.startswith("text-") and finished.parent.name == "runs"
    assert (finished / "spec.yaml").read_text() == SPEC
    resolved = json.loads((finished / "resolved.json").read_text())
    assert resolved["steps"][3] == {
        "op": "generate",
        "id": None,
        "line": 19,
        "prompt": "the cat",
        "seed": 3,
        "max_new_tokens": 6,
    }
    manifest = json.loads((finished / "manifest.json").read_text())
    assert list(manifest)[:2] == ["schema_version", "status"]
    assert manifest["status"] == "succeeded" and manifest["error"] is None
    assert [s["op"] for s in manifest["steps"]] == [
        "generate",
        "load",
        "set_adapters",
        "generate",
        "disable",
        "generate",
    ]
    assert manifest["steps"][2]["active_adapters"] == {"a": 0.5, "b": 0.5}
    assert manifest["steps"][5]["active_adapters"] is None
    assert set(manifest["inputs"]["adapters"]) == {"a", "b"}
    assert all(len(h) == 64 for h in manifest["inputs"]["model"]["files"].values())
    folders = sorted(p.name for p in (finished / "outputs").iterdir())
    assert folders == ["01-base", "04-generate", "06-disabled"]
    rows = [
        json.loads(line)
        for line in (finished / "outputs/01-base/completions.jsonl").read_text().splitlines()
    ]
    assert [r["prompt"] for r in rows] == ["the cat", "once upon a time"]
    assert all({"prompt", "text", "token_ids", "seed", "adapters"} <= set(r) for r in rows)
    assert rows[0]["adapters"] == {} and rows[0]["seed"] == 3 and 0 < len(rows[0]["token_ids"]) <= 6
    blended = json.loads((finished / "outputs/04-generate/completions.jsonl").read_text())
    assert blended["adapters"] == {"a": 0.5, "b": 0.5}
    off = json.loads((finished / "outputs/06-disabled/completions.jsonl").read_text())
    assert off["adapters"] is None
    # disabled output is the base model's
    assert off["token_ids"] == rows[0]["token_ids"]
    listed = {o["path"]: o["sha256"] for s in manifest["steps"] for o in s.get("outputs", [])}
    assert set(listed) == {
        "outputs/01-base/completions.jsonl",
        "outputs/04-generate/completions.jsonl",
        "outputs/06-disabled/completions.jsonl",
    }


def test_sha256sums_checks_with_coreutils(finished: Path) -> None:
    sums = (finished / "SHA256SUMS").read_text().splitlines()
    names = sorted(line.split("  ", 1)[1] for line in sums)
    on_disk = sorted(p.relative_to(finished).as_posix() for p in finished.rglob("*") if p.is_file())
    assert names == [n for n in on_disk if n != "SHA256SUMS"]
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=finished, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_verify_catches_tampering(finished: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    assert invoke("verify", str(copy))[0] == 0
    target = copy / "outputs/04-generate/completions.jsonl"
    data = bytearray(target.read_bytes())
    data[5] ^= 1
    target.write_bytes(bytes(data))
    code, out, _ = invoke("verify", str(copy))
    assert code == 1 and "outputs/04-generate/completions.jsonl" in out


def test_reproduce_is_identical_on_cpu(finished: Path, tmp_path: Path) -> None:
    code, out, err = invoke("reproduce", str(finished), "--out", str(tmp_path))
    assert code == 0, out + err
    recorded = len(json.loads((finished / "manifest.json").read_text())["steps"][-1]["outputs"])
    assert recorded > 0
    assert "every output is identical" in out
    assert re.search(r"outputs: (\d+) of \1 identical", out)
    assert int(re.search(r"outputs: (\d+) of", out)[1]) >= recorded


def test_diff_of_two_seeds_names_the_seed(finished: Path, tmp_path: Path) -> None:
    spec = spec_file(tmp_path, SPEC.replace("seed: 3", "seed: 4"))
    code, out, _ = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 0
    code, report, _ = invoke("diff", str(finished), out.strip())
    assert code == 1
    assert "seed 3 -> 4" in report
    code, as_json, _ = invoke("diff", str(finished), out.strip(), "--json")
    assert code == 1 and json.loads(as_json)["same"] is False


def test_invalid_spec_exits_one_and_writes_no_run(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, SPEC.replace("adapters: [a, b]", "adapters: [a, c]"))
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 1
    assert f"{spec}:16:19: step 2 (load): adapters[1]: adapter 'c' is not declared" in err
    assert not (tmp_path / "runs").exists()


def test_bad_device_option_is_refused(tmp_path: Path) -> None:
    code, _, err = invoke("run", str(spec_file(tmp_path, SPEC)), "--device", "gpu")
    assert code == 1 and "--device" in err


def test_corrupt_adapter_fails_the_step_and_keeps_earlier_outputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad-adapter"
    bad.mkdir()
    from runner import builtin

    good = builtin.resolve("tiny-causal-lm-lora-b")
    (bad / "adapter_config.json").write_bytes((good / "adapter_config.json").read_bytes())
    (bad / "adapter_model.safetensors").write_bytes(b"\x00not a safetensors file")
    spec = spec_file(tmp_path, SPEC.replace("builtin:tiny-causal-lm-lora-b", "./bad-adapter"))
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 2
    assert "Traceback" not in err
    assert f"{spec}:15: step 2 (load): adapter 'b':" in err
    (run,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"]["step"] == 2 and "adapter 'b'" in manifest["error"]["message"]
    assert [s["status"] for s in manifest["steps"]] == ["ok", "failed"]
    assert (run / "outputs/01-base/completions.jsonl").is_file()
    assert invoke("verify", str(run))[0] == 0


def test_runs_never_share_a_directory(tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "device: cpu\nsteps:\n  - op: generate\n    prompt: hi\n    max_new_tokens: 1\n",
    )
    runs = {invoke("run", str(spec), "--out", str(tmp_path / "r"))[1].strip() for _ in range(2)}
    assert len(runs) == 2


def completions(run: Path, folder: str) -> list[dict]:
    lines = (run / "outputs" / folder / "completions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_adapter_folder_as_model_runs_default_then_disable_and_enable(tmp_path: Path) -> None:
    from runner import builtin

    folder = builtin.resolve("tiny-causal-lm-lora-a")
    spec = spec_file(
        tmp_path,
        f"""\
version: 1
device: cpu
model: {{family: transformers, path: {folder}}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
defaults:
  generate: {{max_new_tokens: 6}}
steps:
  - {{op: generate, id: default, prompt: The cat}}
  - {{op: disable}}
  - {{op: generate, id: base, prompt: The cat}}
  - {{op: enable}}
  - {{op: generate, id: again, prompt: The cat}}
  - {{op: load, adapters: a}}
  - {{op: generate, id: loaded-a, prompt: The cat}}
""",
    )
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 0, err
    run = Path(out.strip())
    default, base, again, loaded = (
        completions(run, f)[0] for f in ("01-default", "03-base", "05-again", "07-loaded-a")
    )
    assert default["adapters"] == {"default": 1.0} and base["adapters"] is None
    assert default["token_ids"] == again["token_ids"] == loaded["token_ids"]
    assert default["token_ids"] != base["token_ids"]
    # the model recorded is the base the folder names; the folder is the adapter `default`
    inputs = json.loads((run / "manifest.json").read_text())["inputs"]
    assert inputs["model"]["path"] == "builtin:tiny-causal-lm"
    assert "model.safetensors" in inputs["model"]["files"]
    assert "adapter_model.safetensors" in inputs["adapters"]["default"]["files"]


def test_disable_before_any_adapter_runs_the_base_pipeline(tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        """\
version: 1
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
defaults:
  generate: {num_inference_steps: 2}
steps:
  - {op: disable}
  - {op: generate, id: plain, prompt: a cat}
  - {op: enable}
  - {op: generate, id: enabled, prompt: a cat}
""",
    )
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 0, err
    run = Path(out.strip())
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    from runner import builtin

    pipe = DiffusionPipeline.from_pretrained(str(builtin.resolve("tiny-sd")))
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a cat", num_inference_steps=2, generator=[torch.Generator("cpu").manual_seed(0)]
    ).images[0]
    by_hand = np.asarray(image)
    for folder in ("02-plain", "04-enabled"):
        assert (np.asarray(Image.open(run / f"outputs/{folder}/0.png")) == by_hand).all(), folder


def test_relative_path_without_dot_slash_is_read_from_beside_the_spec(tmp_path: Path) -> None:
    import shutil

    from runner import builtin

    shutil.copytree(builtin.resolve("tiny-causal-lm-lora-b"), tmp_path / "adapters" / "b")
    spec = spec_file(tmp_path, SPEC.replace("builtin:tiny-causal-lm-lora-b", "adapters/b"))
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 0, err
    manifest = json.loads((Path(out.strip()) / "manifest.json").read_text())
    assert manifest["inputs"]["adapters"]["b"]["resolved"] == str(tmp_path / "adapters" / "b")


def test_checksums_sweep_partial_files_an_interrupt_left(tmp_path: Path) -> None:
    from runner.record import rundir
    from runner.record.files import write_atomic

    run = tmp_path / "run"
    write_atomic(run / "outputs/01-x/completions.jsonl", b"{}\n")
    (run / "outputs/01-x/.0.png.abc123.partial").write_bytes(b"half a picture")
    rundir.write_sums(run, {})
    assert sorted(p.name for p in run.rglob("*") if p.is_file()) == [
        "SHA256SUMS",
        "completions.jsonl",
    ]
    assert invoke("verify", str(run))[0] == 0
