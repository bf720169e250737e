"""Hub ids load from the local hub cache, offline, and the manifest records the commit.

The cache is laid out as huggingface_hub lays it out (refs/, snapshots/<commit>/), with
files saved by save_pretrained; the runner runs as a real process pointed at it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import builtin

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cached_repo(cache: Path, repo: str, source: Path) -> Path:
    """Put SOURCE's files into the hub cache as REPO at COMMIT, with refs/main pointing there."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snapshot


def run(spec: Path, cache: Path, out: Path) -> tuple[int, str, str]:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    exe = Path(sys.executable).parent / "runner"
    done = subprocess.run(
        [str(exe), "run", str(spec), "--out", str(out)], capture_output=True, text=True, env=env
    )
    return done.returncode, done.stdout, done.stderr


def test_hub_ids_resolve_from_the_cache_and_are_identified(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    cached_repo(cache, "someone/tiny-lm", builtin.resolve("tiny-causal-lm"))
    cached_repo(cache, "someone/tiny-lora", builtin.resolve("tiny-causal-lm-lora-a"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: someone/tiny-lm}\n"
        "adapters:\n  a: {path: someone/tiny-lora, weight_name: adapter_model.safetensors}\n"
        "steps:\n  - {op: load, adapters: a}\n  - {op: generate, prompt: The cat, max_new_tokens: 6}\n"
    )
    code, out, err = run(spec, cache, tmp_path / "runs")
    assert code == 0, err
    manifest = json.loads((Path(out.strip()) / "manifest.json").read_text())
    model, adapter = manifest["inputs"]["model"], manifest["inputs"]["adapters"]["a"]
    assert model["path"] == "someone/tiny-lm" and model["revision"] == COMMIT
    assert adapter["revision"] == COMMIT and "adapter_model.safetensors" in adapter["files"]
    assert "model.safetensors" in model["files"]


def test_a_hub_id_missing_from_the_cache_fails_fast_and_clearly(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    cache.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: nobody/missing-lora}\n"
        "steps:\n  - {op: load, adapters: a}\n"
    )
    code, _, err = run(spec, cache, tmp_path / "runs")
    assert code == 2
    assert "step 1 (load): adapter 'a': 'nobody/missing-lora' is not in the local hub cache" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("family", ["transformers", "diffusers"])
def test_a_model_missing_from_the_cache_fails_at_once_in_one_line(
    tmp_path: Path, family: str
) -> None:
    cache = tmp_path / "hub"
    cache.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\ndevice: cpu\nmodel: {{family: {family}, path: nobody/missing-model}}\n"
        "steps:\n  - {op: generate, prompt: hi}\n"
    )
    code, _, err = run(spec, cache, tmp_path / "runs")
    assert code == 2
    assert (
        f"{spec}:3: model: 'nobody/missing-model' is not in the local hub cache and the hub "
        "cannot be reached (HF_HUB_OFFLINE or no network)"
    ) in err
    assert "stacktrace" not in err and "Traceback" not in err
