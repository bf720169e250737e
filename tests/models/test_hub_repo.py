"""Hub ids load from a local hub cache, offline, and the manifest records the commit.

The cache is laid out as huggingface_hub lays it out: `models--org--name/refs/main`,
`snapshots/<commit>/` whose files are relative symlinks into `blobs/`, filled with tiny
models saved by save_pretrained, under the repo ids the seed document and the shipped specs
name. HF_HUB_OFFLINE=1 (tests/conftest.py), as on a machine without the hub, and
huggingface_hub's cache folder (what HF_HUB_CACHE sets) pointed at the test's cache: the
`runner run` command line runs in this process, which pays for no second torch import.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from commands import invoke

from runner import builtin

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
BASE_ID, LORA_ID, SHELF_ID = (
    "facebook/opt-350m",
    "peft-internal-testing/opt-350m-lora",
    "someone/shelf",
)
COMMITS = {
    BASE_ID: "1" * 40,
    LORA_ID: "2" * 40,
    SHELF_ID: "3" * 40,
    "stabilityai/stable-diffusion-xl-base-1.0": "4" * 40,
    "peft-internal-testing/artificialguybr__3DRedmond-V1": "5" * 40,
    "ostris/super-cereal-sdxl-lora": "6" * 40,
    "someone/tiny-lm": "7" * 40,
    "someone/tiny-lora": "8" * 40,
}


def cache_repo(cache: Path, repo: str, source: Path, under: str = "") -> Path:
    """SOURCE's files as hub repo REPO (inside folder UNDER) in huggingface_hub's layout:
    blobs named by content hash, snapshot files as relative symlinks to them, refs/main."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMITS[repo]
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / under / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMITS[repo])
    return snapshot


def make_opt(folder: Path) -> None:
    """A tiny OPT (the architecture of facebook/opt-350m), with the builtin's tokenizer."""
    import torch
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(builtin.resolve("tiny-causal-lm"))
    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        word_embed_proj_dim=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def make_opt_lora(folder: Path, base: Path) -> None:
    """A LoRA for the tiny OPT whose adapter_config.json names facebook/opt-350m as its base;
    its B matrices are random, so that it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    model.peft_config["default"].base_model_name_or_path = BASE_ID
    model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hub cache with the transformers repos: the base, its adapter repo, and a repo
    keeping the same adapter in a subfolder."""
    work = tmp_path_factory.mktemp("made")
    cache = tmp_path_factory.mktemp("hub")
    make_opt(work / "opt")
    make_opt_lora(work / "lora", work / "opt")
    cache_repo(cache, BASE_ID, work / "opt")
    cache_repo(cache, LORA_ID, work / "lora")
    cache_repo(cache, SHELF_ID, work / "lora", under="loras/opt")
    return cache


UseCache = Callable[[Path], None]


@pytest.fixture
def use_cache(monkeypatch: pytest.MonkeyPatch) -> UseCache:
    """USE_CACHE(cache): huggingface_hub (and so transformers, diffusers and the runner) reads
    hub ids from CACHE for the rest of the test, as with HF_HUB_CACHE=CACHE."""
    from huggingface_hub import constants

    return lambda cache: monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def runner_run(spec: Path, out: Path) -> Path:
    code, stdout, stderr = invoke("run", str(spec), "--out", str(out))
    assert code == 0, stderr
    return Path(stdout.strip().splitlines()[-1])


def tokens(run: Path, folder: str) -> list[list[int]]:
    lines = (run / "outputs" / folder / "completions.jsonl").read_text().splitlines()
    return [json.loads(line)["token_ids"] for line in lines]


def by_hand() -> list[int]:
    """What transformers' own from_pretrained makes of the adapter repo (its base from the
    adapter's config), greedy on "The cat"."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(LORA_ID).eval()
    tokenizer = AutoTokenizer.from_pretrained(BASE_ID)
    ids = tokenizer("The cat", return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return [int(t) for t in out[0, ids["input_ids"].shape[1] :]]


def test_a_hub_adapter_repo_as_model_loads_its_base_offline_as_transformers_does(
    hub: Path, use_cache: UseCache, tmp_path: Path
) -> None:
    use_cache(hub)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\ndevice: cpu\nmodel: {{family: transformers, path: {LORA_ID}}}\n"
        "steps:\n  - {op: generate, prompt: The cat, max_new_tokens: 8}\n"
        "  - {op: disable}\n  - {op: generate, id: base, prompt: The cat, max_new_tokens: 8}\n"
    )
    run = runner_run(spec, tmp_path / "runs")
    manifest = json.loads((run / "manifest.json").read_text())
    model, default = manifest["inputs"]["model"], manifest["inputs"]["adapters"]["default"]
    assert (model["path"], model["revision"]) == (BASE_ID, COMMITS[BASE_ID])
    assert (default["path"], default["revision"]) == (LORA_ID, COMMITS[LORA_ID])
    assert "model.safetensors" in model["files"]
    assert "adapter_model.safetensors" in default["files"]
    assert manifest["steps"][0]["active_adapters"] == {"default": 1.0}

    oracle = by_hand()
    assert tokens(run, "01-generate") == [oracle]
    assert tokens(run, "03-base") != [oracle]  # the adapter did change what the model says


def test_an_adapter_in_a_subfolder_of_a_hub_repo(
    hub: Path, use_cache: UseCache, tmp_path: Path
) -> None:
    use_cache(hub)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\ndevice: cpu\nmodel: {{family: transformers, path: {BASE_ID}}}\n"
        "adapters:\n"
        f"  shelf: {{path: {SHELF_ID}, subfolder: loras/opt}}\n"
        f"  named: {{path: {SHELF_ID}, subfolder: loras/opt, "
        "weight_name: adapter_model.safetensors}\n"
        f"  whole: {{path: {LORA_ID}}}\n"
        "steps:\n  - {op: load, adapters: [whole, named, shelf]}\n"
        "  - {op: generate, id: shelf, prompt: The cat, max_new_tokens: 8}\n"
        "  - {op: set_adapters, adapters: named}\n"
        "  - {op: generate, id: named, prompt: The cat, max_new_tokens: 8}\n"
        "  - {op: set_adapters, adapters: whole}\n"
        "  - {op: generate, id: whole, prompt: The cat, max_new_tokens: 8}\n"
        "  - {op: disable}\n  - {op: generate, id: base, prompt: The cat, max_new_tokens: 8}\n"
    )
    run = runner_run(spec, tmp_path / "runs")
    adapters = json.loads((run / "manifest.json").read_text())["inputs"]["adapters"]
    for name in ("shelf", "named"):
        assert adapters[name]["subfolder"] == "loras/opt"
        assert adapters[name]["revision"] == COMMITS[SHELF_ID]
        assert adapters[name]["resolved"].endswith("loras/opt")
        assert adapters[name]["files"] == adapters["whole"]["files"]  # the same bytes
    assert adapters["whole"]["subfolder"] is None
    whole = tokens(run, "06-whole")
    assert tokens(run, "02-shelf") == tokens(run, "04-named") == whole != tokens(run, "08-base")


def test_a_subfolder_that_climbs_out_is_a_validation_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: someone/shelf, subfolder: ../elsewhere}\n"
        "steps:\n  - {op: load, adapters: a}\n"
    )
    import runner

    problems = runner.validate(spec)
    assert [(p.line, p.path) for p in problems] == [(4, "adapters.a.subfolder")]
    assert "no '..'" in problems[0].message


def test_a_local_subfolder_missing_is_located_at_subfolder(tmp_path: Path) -> None:
    (tmp_path / "shelf").mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: ./shelf, subfolder: loras/sea}\n"
        "steps:\n  - {op: load, adapters: a}\n"
    )
    import runner

    problems = runner.validate(spec)
    assert [(p.path, p.message) for p in problems] == [
        ("adapters.a.subfolder", "'./shelf' holds no folder 'loras/sea' (subfolder)")
    ]


def test_the_shipped_opt_spec_runs_unchanged_from_the_hub_cache(
    hub: Path, use_cache: UseCache, tmp_path: Path
) -> None:
    use_cache(hub)
    run = runner_run(ROOT / "specs" / "opt-two-adapters.yaml", tmp_path / "runs")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["inputs"]["model"]["revision"] == COMMITS[BASE_ID]
    assert [s["id"] for s in manifest["steps"] if s["op"] == "generate"] == [
        "adapter-1",
        "adapter-2",
        "base",
        "enabled",
    ]


def test_the_shipped_sdxl_spec_runs_unchanged_from_the_hub_cache(
    use_cache: UseCache, tmp_path: Path
) -> None:
    """The two community LoRAs of sdxl-styles.yaml: one in kohya-ss keys, one saved by
    diffusers, each under the weight_name the spec gives, beside the tiny SDXL."""
    cache, work = tmp_path / "hub", tmp_path / "made"
    cache_repo(cache, "stabilityai/stable-diffusion-xl-base-1.0", builtin.resolve("tiny-sdxl"))
    for repo, made, name in (
        (
            "peft-internal-testing/artificialguybr__3DRedmond-V1",
            builtin.resolve("tiny-sdxl-lora-kohya") / "tiny_sdxl_kohya.safetensors",
            "3DRedmond-3DRenderStyle-3DRenderAF.safetensors",
        ),
        (
            "ostris/super-cereal-sdxl-lora",
            builtin.resolve("tiny-sdxl-lora-a") / "pytorch_lora_weights.safetensors",
            "cereal_box_sdxl_v1.safetensors",
        ),
    ):
        (work / repo).mkdir(parents=True)
        shutil.copyfile(made, work / repo / name)
        cache_repo(cache, repo, work / repo)
    use_cache(cache)
    run = runner_run(ROOT / "specs" / "sdxl-styles.yaml", tmp_path / "runs")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    for name, repo in (
        ("3d", "peft-internal-testing/artificialguybr__3DRedmond-V1"),
        ("cereal", "ostris/super-cereal-sdxl-lora"),
    ):
        assert manifest["inputs"]["adapters"][name]["revision"] == COMMITS[repo]
    pictures = {
        folder.name: (folder / "0.png").read_bytes() for folder in (run / "outputs").iterdir()
    }
    assert len(pictures) == 4 and len(set(pictures.values())) == 4  # each setting differs


def test_hub_ids_resolve_from_the_cache_and_are_identified(
    use_cache: UseCache, tmp_path: Path
) -> None:
    cache = tmp_path / "hub"
    cache_repo(cache, "someone/tiny-lm", builtin.resolve("tiny-causal-lm"))
    cache_repo(cache, "someone/tiny-lora", builtin.resolve("tiny-causal-lm-lora-a"))
    use_cache(cache)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: someone/tiny-lm}\n"
        "adapters:\n  a: {path: someone/tiny-lora, weight_name: adapter_model.safetensors}\n"
        "steps:\n  - {op: load, adapters: a}\n  - {op: generate, prompt: The cat, max_new_tokens: 6}\n"
    )
    manifest = json.loads((runner_run(spec, tmp_path / "runs") / "manifest.json").read_text())
    model, adapter = manifest["inputs"]["model"], manifest["inputs"]["adapters"]["a"]
    assert model["path"] == "someone/tiny-lm" and model["revision"] == COMMITS["someone/tiny-lm"]
    assert adapter["revision"] == COMMITS["someone/tiny-lora"]
    assert "adapter_model.safetensors" in adapter["files"]
    assert "model.safetensors" in model["files"]


def test_a_hub_id_missing_from_the_cache_fails_fast_and_clearly(
    use_cache: UseCache, tmp_path: Path
) -> None:
    (tmp_path / "hub").mkdir()
    use_cache(tmp_path / "hub")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: nobody/missing-lora}\n"
        "steps:\n  - {op: load, adapters: a}\n"
    )
    code, _, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 2
    assert "step 1 (load): adapter 'a': 'nobody/missing-lora' is not in the local hub cache" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("family", ["transformers", "diffusers"])
def test_a_model_missing_from_the_cache_fails_at_once_in_one_line(
    use_cache: UseCache, tmp_path: Path, family: str
) -> None:
    (tmp_path / "hub").mkdir()
    use_cache(tmp_path / "hub")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\ndevice: cpu\nmodel: {{family: {family}, path: nobody/missing-model}}\n"
        "steps:\n  - {op: generate, prompt: hi}\n"
    )
    code, _, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 2
    assert (
        f"{spec}:3: model: 'nobody/missing-model' is not in the local hub cache and the hub "
        "cannot be reached (HF_HUB_OFFLINE or no network)"
    ) in err
    assert "stacktrace" not in err and "Traceback" not in err
