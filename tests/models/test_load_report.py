"""Load reports (CONTRACT section 9): each number checked against what the test itself built."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from runner.errors import StepError
from runner.record import adapter_file
from runner.record import manifest as m

TAGS = {"set_a": {"red": 5, "blue": 9, "cat": 1}, "set_b": {"red": 7, "dog": 2}}


def write_safetensors(path: Path, tensors: dict[str, list[float]], meta: dict[str, str]) -> bytes:
    """A float32 safetensors file written by hand (the format is a JSON header and bytes)."""
    head: dict[str, Any] = {"__metadata__": meta}
    data = b""
    for key, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        head[key] = {
            "dtype": "F32",
            "shape": [len(values)],
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(head).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return data


def test_hashes_and_kohya_metadata_of_a_file(tmp_path: Path) -> None:
    file = tmp_path / "x.safetensors"
    body = write_safetensors(file, {"a": [1.0, 2.0]}, {})
    expected_v3 = hashlib.sha256(body).hexdigest()
    meta = {
        "ss_network_dim": "4",
        "ss_network_alpha": "8",
        "ss_base_model_version": "sd_v1",
        "ss_resolution": "(512, 512)",
        "ss_tag_frequency": json.dumps(TAGS),
        "sshs_model_hash": expected_v3,
    }
    body = write_safetensors(file, {"a": [1.0, 2.0]}, meta)
    whole = hashlib.sha256(file.read_bytes()).hexdigest()
    hashes = adapter_file.hashes(file)
    assert hashes.sha256 == whole and hashes.autov2 == whole[:10]
    assert hashes.autov3 == hashlib.sha256(body).hexdigest() == expected_v3
    assert hashes.sshs_model_hash_matches is True
    kohya = adapter_file.kohya(adapter_file.metadata(file))
    assert kohya is not None and kohya.ss_network_alpha == "8" and kohya.ss_network_dim == "4"
    assert kohya.top_tags == ["red", "blue", "dog", "cat"]  # red 5 + 7 summed over folders

    write_safetensors(file, {"a": [1.0, 2.0]}, {**meta, "sshs_model_hash": "0" * 64})
    assert adapter_file.hashes(file).sshs_model_hash_matches is False


def test_the_terminal_line_and_an_old_manifest_reads() -> None:
    report = m.LoadReport(
        modules=140,
        components={"unet": m.ComponentLoad(modules=140)},
        rank=4,
        alpha=8.0,
        alpha_source="file",
        scale=2.0,
    )
    assert report.line("3d") == (
        "adapter 3d: 140 modules (unet 140), 0 keys unmatched, rank 4, alpha 8 (file), scale 2.0"
    )
    read = m._reader(m.AdapterRecord)(
        json.loads(json.dumps({"load": m._plain(report)}, default=m._plain))
    )
    assert read.load == report
    assert m._reader(m.Manifest).__name__  # a manifest without `adapters` still parses:
    old = {
        "status": "succeeded",
        "started": "x",
        "spec": {"file": "f", "sha256": "s", "name": "n", "base_dir": "."},
        "runner": {},
    }
    assert m.parse({"schema_version": m.SCHEMA_VERSION, **old}).adapters == {}


# --- diffusers: a kohya file made here, on the builtin tiny-sd ---------------------------


@pytest.fixture(scope="module")
def sd() -> Any:
    from runner import builtin

    return builtin.resolve("tiny-sd")


def backend(model: Path) -> Any:
    from runner.backends.diffusers_backend import DiffusersBackend
    from runner.spec.types import Model

    runner = DiffusersBackend("cpu", "float32")
    runner.load_model(Model("diffusers", str(model)), model)
    return runner


def kohya_file(
    sd: Path,
    folder: Path,
    *,
    alpha: float | None,
    meta: dict[str, str],
    prefix: str = "lora_unet_",
    zero: bool = False,
    wrong: int = 0,
) -> tuple[Path, int]:
    """A rank-4 kohya LoRA on the tiny UNet's attention projections; returns the file and how
    many modules it names. WRONG of them get a misspelt path."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    targets = [
        (n, mod)
        for n, mod in unet.named_modules()
        if "attentions" in n and n.endswith(("to_q", "to_k", "to_v", "to_out.0"))
    ]
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for i, (name, module) in enumerate(targets):
        stem = prefix + name.replace(".", "_")
        if i < wrong:
            stem = stem.replace("attentions", "atentions")
        tensors[f"{stem}.lora_down.weight"] = torch.randn(
            4, module.in_features, generator=generator
        )
        up = torch.randn(module.out_features, 4, generator=generator)
        tensors[f"{stem}.lora_up.weight"] = up * 0 if zero else up
        if alpha is not None:
            tensors[f"{stem}.alpha"] = torch.tensor(alpha)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "k.safetensors", meta)
    return folder / "k.safetensors", len(targets)


def load(runner: Any, name: str, file: Path) -> m.LoadReport:
    from runner.spec.types import Adapter

    report: m.LoadReport = runner.load_adapter(Adapter(name=name, path=str(file)), file)
    return report


def test_a_kohya_file_reports_its_modules_rank_alpha_and_scale(sd: Path, tmp_path: Path) -> None:
    file, count = kohya_file(sd, tmp_path / "k", alpha=8.0, meta={"ss_network_dim": "4"})
    report = load(backend(sd), "k", file)
    assert report.modules == count and report.components["unet"].modules == count
    assert (report.rank, report.alpha, report.alpha_source, report.scale) == (4, 8.0, "file", 2.0)
    assert report.unmatched_count == 0 and not report.warnings
    assert report.hashes is not None
    assert report.hashes.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert report.kohya is not None and report.kohya.ss_network_dim == "4"
    assert report.line("k") == (
        f"adapter k: {count} modules (unet {count}), 0 keys unmatched, rank 4, alpha 8 (file), "
        "scale 2.0"
    )


def test_alpha_only_in_ss_network_alpha_is_honoured(sd: Path, tmp_path: Path) -> None:
    file, count = kohya_file(sd, tmp_path / "k", alpha=None, meta={"ss_network_alpha": "8"})
    runner = backend(sd)
    report = load(runner, "k", file)
    assert (report.alpha, report.alpha_source, report.scale) == (8.0, "metadata", 2.0)
    from peft.tuners.lora import LoraLayer

    scales = {mod.scaling["k"] for mod in runner.pipe.unet.modules() if isinstance(mod, LoraLayer)}
    assert scales == {2.0}  # what runs, not only what is said


def test_a_file_without_alpha_runs_at_alpha_equal_rank(sd: Path, tmp_path: Path) -> None:
    file, _ = kohya_file(sd, tmp_path / "k", alpha=None, meta={})
    report = load(backend(sd), "k", file)
    assert (report.rank, report.alpha, report.alpha_source, report.scale) == (
        4,
        4.0,
        "default",
        1.0,
    )


def test_keys_beside_matched_ones_warn_and_are_listed(sd: Path, tmp_path: Path) -> None:
    file, count = kohya_file(sd, tmp_path / "k", alpha=4.0, meta={}, wrong=2)
    report = load(backend(sd), "k", file)
    assert report.modules == count - 2
    # each wrong module: its down and up weights (diffusers keeps the alphas apart)
    assert report.unmatched_count == 4 and len(report.warnings) == 1
    assert all("atentions" in key for key in report.unmatched_keys)
    assert "closest" in report.warnings[0] and "attentions" in report.warnings[0]


def test_a_lora_for_another_model_matches_no_module(sd: Path, tmp_path: Path) -> None:
    file, _ = kohya_file(sd, tmp_path / "k", alpha=4.0, meta={}, prefix="lora_unat_")
    runner = backend(sd)
    with pytest.raises(StepError, match=r"matches no module .* the closest module names are"):
        load(runner, "k", file)
    assert runner.adapters() == set()


# --- transformers: the builtin PEFT adapter (r=8, lora_alpha=16), and a config adapter ----


def lm() -> Any:
    from runner import builtin
    from runner.backends.transformers_backend import TransformersBackend
    from runner.spec.types import Model

    runner = TransformersBackend("cpu", "float32")
    runner.load_model(
        Model("transformers", "builtin:tiny-causal-lm"), builtin.resolve("tiny-causal-lm")
    )
    return runner


def test_a_peft_adapter_reports_its_config(tmp_path: Path) -> None:
    from runner import builtin
    from runner.spec.types import Adapter

    folder = builtin.resolve("tiny-causal-lm-lora-a")
    config = json.loads((folder / "adapter_config.json").read_text())
    runner = lm()
    expected = [
        n
        for n, _ in runner.model.named_modules()
        if n.rpartition(".")[2] in config["target_modules"]
    ]
    report = runner.load_adapter(Adapter(name="a", path=str(folder)), folder)
    assert report.modules == len(expected) == report.components["model"].modules
    assert (report.rank, report.alpha, report.alpha_source) == (8, 16.0, "config")
    assert report.scale == 2.0 and report.unmatched_count == 0


def test_a_misspelt_target_module_names_the_close_ones() -> None:
    from runner.spec.types import Adapter, LoraConfig

    runner = lm()
    options = {"r": 4, "target_modules": ["q_prj", "v_proj"]}
    with pytest.raises(
        StepError, match=r"'q_prj' names no module .* closest module names are q_proj"
    ):
        runner.load_adapter(Adapter(name="c", config=LoraConfig("lora", options)), None)
    assert not getattr(runner.model, "peft_config", None)


def test_a_deeper_models_lora_loads_with_its_extra_layer_unmatched(tmp_path: Path) -> None:
    from tiny_lm import make_base, make_lora

    from runner.backends.transformers_backend import TransformersBackend
    from runner.spec.types import Adapter, Model

    base = make_base(tmp_path / "base")  # 2 layers
    deep = make_lora(make_base(tmp_path / "deep", layers=3), tmp_path / "lora", seed=5)
    runner = TransformersBackend("cpu", "float32")
    runner.load_model(Model("transformers", str(base)), base)
    report = runner.load_adapter(Adapter(name="d", path=str(deep)), deep)
    # q_proj and v_proj of layers 0 and 1 land; layer 2's A and B of both match nothing
    assert report.modules == 4 and report.rank == 4 and report.alpha == 8.0
    assert report.unmatched_count == 4
    assert all(".layers.2." in key for key in report.unmatched_keys)
    assert report.warnings and report.warnings[0].startswith("4 keys match no module")
