"""The report says how each output was made: a generating step's settings after defaults
(the model's generation config for text, each PNG's own record for images) and where each
seed came from."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import runner

TEXT = """\
version: 1
name: settings-text
seed: 5
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
steps:
  - op: load
    adapters: a
  - op: generate
    id: sampled
    prompt: hello
    seed: 3
    do_sample: true
    temperature: 0.7
    max_new_tokens: 4
  - op: generate
    id: greedy
    prompt: hello
    max_new_tokens: 3
  - op: compare
    id: grid
    adapters: [base, a]
    prompt: hello
    seed: [1, 2]
    max_new_tokens: 2
"""

IMAGES = """\
version: 1
name: settings-images
seed: 0
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
defaults:
  generate: {num_inference_steps: 2}
steps:
  - op: generate
    id: pics
    prompt: [a red cube, a blue ball]
"""


def _sections(run_dir: Path) -> list[str]:
    html = (run_dir / "report.html").read_text()
    sections = html.split("<section")[1:]
    return [" ".join(" ".join(parse_text(s)).split()) for s in sections]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_text(fragment: str) -> list[str]:
    page = _Text()
    page.feed(fragment)
    return page.text


def test_text_steps_show_their_sampling_settings_and_seed_origin(tmp_path: Path) -> None:
    spec = tmp_path / "text.yaml"
    spec.write_text(TEXT)
    run = runner.run(spec, out=tmp_path / "runs")
    load, sampled, greedy, grid = _sections(run.dir)
    assert "ran with" not in load
    for shown in ("do_sample true", "temperature 0.7", "max_new_tokens 4", "num_beams 1"):
        assert shown in sampled, (shown, sampled)
    assert "seed 3 (the step's own)" in sampled
    # Greedy: the model's generation config filled in; no sampling settings shown.
    assert "do_sample false" in greedy and "temperature" not in greedy
    assert "seed 5 (the spec's seed (the step sets none))" in greedy
    assert "seeds [1, 2] (the step's own)" in grid and "max_new_tokens 2" in grid
    header = " ".join(" ".join(parse_text((run.dir / "report.html").read_text())).split())
    assert "spec seed 5 (for steps that set none" in header


def test_image_steps_show_what_their_pngs_record(tmp_path: Path) -> None:
    spec = tmp_path / "images.yaml"
    spec.write_text(IMAGES)
    run = runner.run(spec, out=tmp_path / "runs")
    (pics,) = _sections(run.dir)
    for shown in ("num_inference_steps 2", "guidance_scale ", "size ", "scheduler "):
        assert shown in pics, (shown, pics)
    assert "seed 0 (the spec's seed (the step sets none); image k of the step draws" in pics
