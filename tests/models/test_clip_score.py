"""`metrics: [clip_score]` on an image compare (CONTRACT section 10): each picture cell's
score equals CLIPModel and CLIPProcessor called by hand on the PNG the run recorded, each
row's summary is its cells' mean, and runner scores / run.scores give the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from commands import invoke
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

import runner
from runner import builtin

PROMPTS = ["a red cat", "a blue city at night", "a panda painting"]
SPEC = f"""\
version: 1
name: clipped
device: cpu
model: {{family: diffusers, path: builtin:tiny-sd}}
adapters:
  a: {{path: builtin:tiny-sd-lora-a}}
defaults:
  generate: {{num_inference_steps: 2}}
steps:
  - {{op: load, adapters: [a]}}
  - op: compare
    id: clip
    adapters: [base, a]
    prompt: {json.dumps(PROMPTS)}
    seed: [0, 1]
    metrics: [clip_score]
    clip: {{path: builtin:tiny-clip}}
    expect: {{differs_from_base: true}}
"""


def _by_hand(folder: Path, pictures: list[tuple[Path, str]]) -> list[float]:
    """torchmetrics' clip_score, one image at a time: 100 x max(cos, 0) of the projected
    image and text features."""
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    found = []
    for file, prompt in pictures:
        with Image.open(file) as image:
            inputs = processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            seen = model.get_image_features(pixel_values=inputs["pixel_values"])
            said = model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            )
        seen = getattr(seen, "pooler_output", seen)  # transformers 5 returns an output object
        said = getattr(said, "pooler_output", said)
        cos = torch.nn.functional.cosine_similarity(seen, said).item()
        found.append(100 * max(cos, 0.0))
    return found


def test_clip_score_is_clip_by_hand_on_the_recorded_pngs(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    run = runner.run(spec, out=tmp_path)
    folder = run.dir / "outputs/02-clip"
    cells = [json.loads(x) for x in (folder / "cells.jsonl").read_text().splitlines()]
    assert len(cells) == 2 * len(PROMPTS) * 2
    expected = _by_hand(
        builtin.resolve("tiny-clip"), [(folder / c["image"], c["prompt"]) for c in cells]
    )
    got = [c["clip_score"] for c in cells]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4
    assert any(x == 0 for x in expected) and len({x for x in expected if x > 0}) > 2  # floored

    scores = run.scores("clip")
    assert [(s.row, s.records) for s in scores] == [("base", 6), ("a", 6)]
    for s in scores:
        mine = [e for c, e in zip(cells, expected, strict=True) if c["row"] == s.row]
        assert abs((s.clip_score or 0) - sum(mine) / len(mine)) < 1e-4
        assert s.loglik is None and s.accuracy is None
    code, out, _ = invoke("scores", str(run.dir), "--json")
    assert code == 0
    assert [e["clip_score"] for e in json.loads(out)] == [s.clip_score for s in scores]
    page = (run.dir / "report.html").read_text()
    section = page.split("id='step-2'")[1].split("</section>")[0]
    assert "<th>clip_score</th>" in section and section.count("<svg") == 1
    model = run.manifest.steps[1].execution["clip"]  # the CLIP model, byte for byte
    assert model["path"] == "builtin:tiny-clip" and "model.safetensors" in model["files"]
    # and among the run's inputs, which resume, reproduce and diff compare
    assert run.manifest.inputs.clip["builtin:tiny-clip"].files == model["files"]
    assert [r.passed for r in run.manifest.steps[1].expectations or []] == [True]
    assert runner.verify(run).ok
