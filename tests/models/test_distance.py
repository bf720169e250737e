"""Distance to base and no-op rows (CONTRACT section 9) on the builtin models: every value
recomputed here from the PNGs and token ids, `kl` from a hand-written teacher-forced forward
with transformers + peft; a LoRA whose B matrices are zero is a no-op row with a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.record import cells as c

TEXT = """\
version: 1
name: distance-text
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  zero: {config: {type: lora, r: 4, target_modules: [q_proj, v_proj]}}
defaults:
  generate: {max_new_tokens: 8}
steps:
  - op: load
    adapters: [a, zero]
  - op: compare
    adapters: [a, base, {a: 0.3}, zero]
    prompt: [the cat, a little bird]
    seed: [0, 1]
"""


def _run(tmp: Path, text: str) -> tuple[runner.Run, list[str]]:
    (tmp / "spec.yaml").write_text(text)
    lines: list[str] = []
    return runner.run(tmp / "spec.yaml", out=tmp / "runs", progress=lines.append), lines


def _cells(run: runner.Run, step: int) -> tuple[list[c.CellRecord], str]:
    record = run.manifest.steps[step - 1]
    listing = next(o.path for o in record.outputs if o.path.endswith("/cells.jsonl"))
    return c.read(run.dir / listing), listing.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[runner.Run, list[str]]:
    return _run(tmp_path_factory.mktemp("distance-text"), TEXT)


def _teacher_forced(model: Any, tokenizer: Any, prompt: str, completion: list[int]) -> Any:
    import torch

    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + completion])).logits[0]
    return torch.log_softmax(logits[len(ids) - 1 : len(ids) - 1 + len(completion)], dim=-1)


def test_text_distances_against_hand_written_teacher_forcing(
    text_run: tuple[runner.Run, list[str]],
) -> None:
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner import builtin

    run, _ = text_run
    cells, _ = _cells(run, 2)
    base = [cell for cell in cells if cell.row == "base"]
    assert len(base) == 4 and all(cell.distance is None for cell in base)
    model = AutoModelForCausalLM.from_pretrained(builtin.resolve("tiny-causal-lm")).eval()
    tokenizer = AutoTokenizer.from_pretrained(builtin.resolve("tiny-causal-lm"))
    model.load_adapter(str(builtin.resolve("tiny-causal-lm-lora-a")), adapter_name="a")
    model.eval()
    for label, scale in (("a", 1.0), ("a=0.3", 0.3)):
        mine = [cell for cell in cells if cell.row == label]
        assert len(mine) == 4
        for cell, theirs in zip(mine, base, strict=True):
            assert (cell.prompt, cell.seed) == (theirs.prompt, theirs.seed)
            a, b = cell.token_ids or [], theirs.token_ids or []
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            if first is None and len(a) != len(b):
                first = min(len(a), len(b))
            assert cell.distance is not None
            assert cell.distance["first_divergence"] == first
            same = sum(x == y for x, y in zip(a, b, strict=False)) / max(len(a), len(b))
            assert cell.distance["same_tokens"] == pytest.approx(same)
            model.disable_adapters()
            q = _teacher_forced(model, tokenizer, cell.prompt, b)
            model.enable_adapters()
            model.set_adapter("a")
            for module in model.modules():
                if isinstance(module, LoraLayer):
                    module.set_scale("a", scale)
            p = _teacher_forced(model, tokenizer, cell.prompt, b)
            kl = (p.exp() * (p - q)).sum(-1).mean().item()  # KL(row || base), per position
            assert kl > 1e-3
            assert cell.distance["kl"] == pytest.approx(kl, rel=1e-4, abs=1e-7)
            assert cell.noop is False


def test_text_zero_lora_is_a_noop_row_with_a_warning(
    text_run: tuple[runner.Run, list[str]],
) -> None:
    run, lines = text_run
    cells, _ = _cells(run, 2)
    zero = [cell for cell in cells if cell.row == "zero"]
    assert zero and all(cell.noop is True for cell in zero)
    assert all(
        cell.distance == {"first_divergence": None, "same_tokens": 1.0, "kl": 0.0} for cell in zero
    )
    rows = {r.row: r for r in run.manifest.steps[1].rows or []}
    assert set(rows) == {"a", "a=0.3", "zero"}
    assert rows["zero"].noop and not rows["a"].noop and not rows["a=0.3"].noop
    a_kls = [cell.distance["kl"] for cell in cells if cell.row == "a" and cell.distance]
    assert rows["a"].mean_distance == pytest.approx(sum(a_kls) / len(a_kls), abs=1e-6)
    warnings = [line.strip() for line in lines if "changed nothing" in line]
    assert warnings == ["warning: row zero changed nothing: every cell equals its base cell"]


IMAGE = """\
version: 1
name: distance-image
seed: 0
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
  zero: {path: ZERO}
defaults:
  generate: {num_inference_steps: 2, num_images_per_prompt: 2}
steps:
  - op: load
    adapters: [a, zero]
  - op: compare
    adapters: [a, base, zero]
    prompt: [a red cube, a blue ball]
    seed: 5
"""


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[runner.Run, list[str]]:
    from safetensors.torch import load_file, save_file

    from runner import builtin

    tmp = tmp_path_factory.mktemp("distance-image")
    weights = load_file(builtin.resolve("tiny-sd-lora-a") / "pytorch_lora_weights.safetensors")
    zeroed = {k: v * 0 if ".up." in k else v for k, v in weights.items()}
    assert zeroed.keys() == weights.keys() and any(".up." in k for k in weights)
    save_file(zeroed, str(tmp / "zero.safetensors"))
    return _run(tmp, IMAGE.replace("ZERO", json.dumps(str(tmp / "zero.safetensors"))))


def test_image_distances_and_difference_pictures_from_the_pngs(
    image_run: tuple[runner.Run, list[str]],
) -> None:
    import numpy as np
    from PIL import Image

    run, lines = image_run
    cells, folder = _cells(run, 2)
    outputs = {o.path for o in run.manifest.steps[1].outputs}
    base = [cell for cell in cells if cell.row == "base"]
    assert len(base) == 4
    for label in ("a", "zero"):
        mine = [cell for cell in cells if cell.row == label]
        for cell, theirs in zip(mine, base, strict=True):
            x = np.asarray(Image.open(run.dir / folder / (cell.image or "")), dtype=int)
            y = np.asarray(Image.open(run.dir / folder / (theirs.image or "")), dtype=int)
            diff = np.abs(x - y)
            assert cell.distance is not None
            assert cell.distance["mean_abs"] == pytest.approx(diff.mean(), abs=1e-6)
            assert cell.distance["max_abs"] == diff.max()
            name = f"{folder}/diff-{cell.image}"
            assert name in outputs
            picture = np.asarray(Image.open(run.dir / name), dtype=float)
            expected = diff * (255.0 / diff.max()) if diff.max() else diff
            assert np.abs(picture - expected).max() <= 0.5
        if label == "a":
            assert all(cell.distance and cell.distance["mean_abs"] > 1 for cell in mine)
            assert all(cell.noop is False for cell in mine)
    zero = [cell for cell in cells if cell.row == "zero"]
    assert all(
        cell.noop is True and cell.distance == {"mean_abs": 0.0, "max_abs": 0} for cell in zero
    )
    rows = {r.row: r for r in run.manifest.steps[1].rows or []}
    assert rows["zero"].noop and not rows["a"].noop
    assert [line.strip() for line in lines if "changed nothing" in line] == [
        "warning: row zero changed nothing: every cell equals its base cell"
    ]


def test_a_compare_without_base_row_records_no_distance(tmp_path: Path) -> None:
    spec = TEXT.replace("[a, base, {a: 0.3}, zero]", "[a, zero]")
    run, lines = _run(tmp_path, spec)
    cells, _ = _cells(run, 2)
    assert all(cell.distance is None and cell.noop is None for cell in cells)
    assert run.manifest.steps[1].rows is None
    assert not any("changed nothing" in line for line in lines)


def test_report_shows_the_noop_badge_and_the_difference_pictures(
    image_run: tuple[runner.Run, list[str]],
) -> None:
    import re

    run, _ = image_run
    page = (run.dir / "report.html").read_text()
    rows = re.findall(r"<tr><th>([^<]*)(?: <span class=noop[^>]*>no-op</span>)?</th>", page)
    badged = re.findall(r"<tr><th>([^<]*) <span class=noop[^>]*>no-op</span></th>", page)
    assert badged == ["zero"] and {"a", "base", "zero"} <= set(rows)
    shown = re.findall(r"<details><summary>difference</summary><a href=\"([^\"]+)\"", page)
    assert len(shown) == 8  # every non-base cell: 2 rows x 2 prompts x 2 images
    assert all((run.dir / link).is_file() and "/diff-" in link for link in shown)
    assert "<script" not in page and "Content-Security-Policy" in page
