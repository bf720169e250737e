"""fuse / unfuse / delete against the same diffusers and transformers+peft calls by hand.

Images within 1/255 of the hand-written pipeline's, tokens exactly; unfuse's base weights
compared by hash with those of a fresh load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import AutoModelForCausalLM, AutoTokenizer

import runner
from runner import builtin
from runner.errors import StepError

PROMPT = "a photo of a cat"
DRAW = {"num_inference_steps": 2, "height": 32, "width": 32}


def base_hash(modules: dict[str, Any]) -> str:
    """sha256 of the base layers' weights under every LoRA layer, written independently."""
    hashed = hashlib.sha256()
    for part in sorted(modules):
        for name, module in modules[part].named_modules():
            if isinstance(module, BaseTunerLayer):
                for key, tensor in module.get_base_layer().named_parameters(recurse=False):
                    hashed.update(
                        f"{part}.{name}.{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode()
                    )
                    hashed.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return hashed.hexdigest()


def lora(name: str) -> Path:
    found = builtin.resolve(name)
    return found if found.is_file() else next(found.glob("*.safetensors"))


def draw(pipe: Any, seed: int) -> np.ndarray:
    out = pipe(prompt=[PROMPT], generator=[torch.Generator("cpu").manual_seed(seed)], **DRAW).images
    return np.array(out[0]).astype(int)


def pixels(run: runner.Run, step: str) -> np.ndarray:
    (picture,) = run.outputs[step]
    return np.array(picture.image).astype(int)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> runner.Run:
    folder = tmp_path_factory.mktemp("fuse-sd")
    spec = folder / "spec.yaml"
    spec.write_text(
        "version: 1\nseed: 5\ndevice: cpu\n"
        "model: {family: diffusers, path: builtin:tiny-sd}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n  b: {path: builtin:tiny-sd-lora-b}\n"
        f"defaults:\n  generate: {DRAW}\n".replace("'", "")
        + "steps:\n"
        "  - {op: load, adapters: [a, b]}\n"
        "  - {op: set_adapters, adapters: {a: 0.7, b: 0.4}}\n"
        "  - {op: fuse, id: fuse, lora_scale: 0.8}\n"
        f"  - {{op: generate, id: fused, prompt: {PROMPT}}}\n"
        "  - {op: unfuse, id: unfuse}\n"
        f"  - {{op: generate, id: unfused, prompt: {PROMPT}}}\n"
        "  - {op: delete, id: delete, adapters: a}\n"
        f"  - {{op: generate, id: deleted, prompt: {PROMPT}}}\n"
        "  - {op: delete, adapters: b}\n"
        f"  - {{op: generate, id: none, prompt: {PROMPT}}}\n"
    )
    return runner.run(spec, out=folder / "runs")


@pytest.fixture(scope="module")
def image_hand() -> dict[str, Any]:
    pipe = DiffusionPipeline.from_pretrained(builtin.resolve("tiny-sd"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out: dict[str, Any] = {"plain": draw(pipe, 5)}
    for name in ("a", "b"):
        file = lora(f"tiny-sd-lora-{name}")
        pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name)
    modules = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    out["before"] = base_hash(modules)
    pipe.set_adapters(["a", "b"], adapter_weights=[0.7, 0.4])
    out["weighted"] = draw(pipe, 5)
    pipe.fuse_lora(lora_scale=0.8, adapter_names=["a", "b"])
    out["fused"] = draw(pipe, 5)
    pipe.unfuse_lora()
    out["unfused_alone"] = draw(pipe, 5)  # the layers still scaled by 0.8
    pipe.set_adapters(["a", "b"], adapter_weights=[0.7, 0.4])
    out["unfused"] = draw(pipe, 5)
    pipe.delete_adapters(["a"])
    pipe.set_adapters(["b"], adapter_weights=[0.4])
    out["deleted"] = draw(pipe, 5)
    return out


def test_fused_pixels_equal_fuse_lora_by_hand(
    image_run: runner.Run, image_hand: dict[str, Any]
) -> None:
    fused = pixels(image_run, "fused")
    assert np.abs(fused - image_hand["fused"]).max() <= 1
    assert np.abs(fused - image_hand["weighted"]).mean() > 1  # lora_scale 0.8 changed them


def test_unfuse_gives_the_base_weights_back_bit_for_bit(
    image_run: runner.Run, image_hand: dict[str, Any]
) -> None:
    step = next(s for s in image_run.manifest.steps if s.id == "unfuse")
    fuse = next(s for s in image_run.manifest.steps if s.id == "fuse")
    assert fuse.execution["base_sha256"] == image_hand["before"]  # hashed independently
    assert step.execution["base_sha256"] == image_hand["before"]
    assert fuse.arguments == {"lora_scale": 0.8}
    assert np.abs(pixels(image_run, "unfused") - image_hand["unfused"]).max() <= 1
    assert np.abs(pixels(image_run, "unfused") - image_hand["weighted"]).max() <= 1
    # unfuse_lora alone leaves fuse's lora_scale on the layers; the runner sets the weights again
    assert np.abs(image_hand["unfused_alone"] - image_hand["weighted"]).max() > 1


def test_delete_removes_the_adapter_and_records_memory(
    image_run: runner.Run, image_hand: dict[str, Any]
) -> None:
    assert np.abs(pixels(image_run, "deleted") - image_hand["deleted"]).max() <= 1
    # with every adapter deleted, the base model runs
    assert np.abs(pixels(image_run, "none") - image_hand["plain"]).max() <= 1
    step = next(s for s in image_run.manifest.steps if s.id == "delete")
    assert step.active_adapters == {"b": 0.4}
    assert step.memory is not None and step.memory.before and step.memory.after
    assert step.memory.before.rss_bytes > 10_000_000
    assert step.memory.after.rss_bytes > 10_000_000


def test_fused_tokens_equal_merge_adapter_by_hand(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nseed: 3\ndevice: cpu\n"
        "model: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "defaults:\n  generate: {max_new_tokens: 12}\n"
        "steps:\n"
        "  - {op: load, adapters: a}\n"
        "  - {op: set_adapters, adapters: {a: 0.6}}\n"
        "  - {op: generate, id: weighted, prompt: [The cat, Once upon]}\n"
        "  - {op: fuse, id: fuse}\n"
        "  - {op: generate, id: fused, prompt: [The cat, Once upon]}\n"
        "  - {op: unfuse, id: unfuse}\n"
        "  - {op: delete, adapters: a}\n"
        "  - {op: generate, id: base, prompt: [The cat, Once upon]}\n"
    )
    run = runner.run(spec, out=tmp_path / "runs")
    folder = builtin.resolve("tiny-causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(folder),
        builtin.resolve("tiny-causal-lm-lora-a"),
        adapter_name="a",
    ).eval()
    before = base_hash({"model": model.base_model.model})  # named as the runner sees it

    def tokens() -> list[list[int]]:
        batch = tokenizer(["The cat", "Once upon"], padding=True, return_tensors="pt")
        torch.manual_seed(3)
        out = model.generate(**batch, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
        return out[:, batch["input_ids"].shape[1] :].tolist()

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.set_scale("a", 0.6)
    model.merge_adapter(["a"])
    fused = tokens()
    got = [t.token_ids for t in run.outputs["fused"]]  # type: ignore[union-attr]
    assert got == [row[: len(g)] for row, g in zip(fused, got, strict=True)]
    assert got == [t.token_ids for t in run.outputs["weighted"]]  # type: ignore[union-attr]
    steps = {s.id: s for s in run.manifest.steps}
    assert steps["fuse"].execution["base_sha256"] == before
    assert steps["unfuse"].execution["base_sha256"] == before
    with model.disable_adapter():
        base = tokens()
    got = [t.token_ids for t in run.outputs["base"]]  # type: ignore[union-attr]
    assert got == [row[: len(g)] for row, g in zip(base, got, strict=True)]


def test_unfuse_fails_when_the_base_weights_did_not_come_back() -> None:
    from runner.backends.fusing import Kept

    layer = torch.nn.Linear(4, 4)
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(torch.nn.Sequential(layer), LoraConfig(target_modules=["0"]))
    kept = Kept.before_fuse({"m": model})
    kept.copies[next(iter(kept.copies))] = torch.zeros(4, 4)  # as if the copy were not the base
    with pytest.raises(StepError, match="not bit-identical"):
        kept.put_back({"m": model})
