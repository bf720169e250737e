"""op: compare on the builtin models: cells against hand-written library calls and against
the equivalent set_adapters + generate steps, the grid, and the model state afterwards.

The fast half (rows, the typed step, the cell writer) is tests/unit/test_compare.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from commands import TEXT_HEAD, spec_file

import runner

# --- text: an oracle against transformers + peft, and the state afterwards (models) -------

TEXT_SPEC = (
    TEXT_HEAD
    + """\
name: compare-text
defaults:
  generate: {max_new_tokens: 8}
steps:
  - op: load
    adapters: [a, b]
  - op: set_adapters
    adapters: {a: 0.7}
  - op: generate
    id: before
    prompt: [the cat, once upon a time]
  - op: compare
    id: sampled
    adapters: [base, a, {a: 0.5, b: 0.5}, {b: [0.25, 1.0]}]
    prompt: [the cat, a little bird]
    seed: [0, 1]
    do_sample: true
    top_k: 20
  - op: generate
    id: after
    prompt: [the cat, once upon a time]
  - op: disable
  - op: compare
    id: greedy
    adapters: [a, {a: 0.5, b: 0.5}, base, {b: [0.25, 1.0]}]
    prompt: the cat
  - op: generate
    id: after-off
    prompt: [the cat, once upon a time]
  - op: enable
  - op: generate
    id: after-on
    prompt: [the cat, once upon a time]
"""
)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> runner.Run:
    tmp = tmp_path_factory.mktemp("compare-text")
    return runner.run(spec_file(tmp, TEXT_SPEC), out=tmp / "runs")


class ByHand:
    """The builtin LM and its two LoRAs through transformers' PEFT integration, as its docs
    write it; weights as peft's per-layer set_scale (diffusers' meaning)."""

    def __init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from runner import builtin

        base = builtin.resolve("tiny-causal-lm")
        self.model = AutoModelForCausalLM.from_pretrained(base).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        for name in ("a", "b"):
            folder = builtin.resolve(f"tiny-causal-lm-lora-{name}")
            self.model.load_adapter(str(folder), adapter_name=name)
        self.model.eval()

    def setting(self, weights: dict[str, float] | None) -> None:
        from peft.tuners.lora import LoraLayer

        if weights is None:
            self.model.disable_adapters()
            return
        self.model.set_adapter(list(weights))
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                for name, weight in weights.items():
                    module.set_scale(name, weight)
        self.model.enable_adapters()

    def generate(self, prompts: list[str], seed: int, **kwargs: Any) -> list[list[int]]:
        import torch

        batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        torch.manual_seed(seed)
        out = self.model.generate(
            **batch, max_new_tokens=8, pad_token_id=self.tokenizer.pad_token_id, **kwargs
        )
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        found = []
        for row in out[:, batch["input_ids"].shape[1] :].tolist():
            ends = [i for i, token in enumerate(row) if token in stops]
            found.append(row[: ends[0] + 1] if ends else row)
        return found


def _tokens(run: runner.Run, key: str) -> list[list[int]]:
    return [t.token_ids for t in run.outputs[key]]  # type: ignore[union-attr]


def test_text_cells_equal_hand_written_transformers_and_peft_calls(text_run: runner.Run) -> None:
    by_hand = ByHand()
    settings: list[dict[str, float] | None] = [
        None,
        {"a": 1.0},
        {"a": 0.5, "b": 0.5},
        {"b": 0.25},
        {"b": 1.0},
    ]
    expected = []
    for weights in settings:
        by_hand.setting(weights)
        for prompt in ("the cat", "a little bird"):
            for seed in (0, 1):
                (ids,) = by_hand.generate([prompt], seed, do_sample=True, top_k=20)
                expected.append((weights, prompt, seed, ids))
    cells = text_run.cells("sampled")
    assert [(c.adapters, c.prompt, c.seed, c.token_ids) for c in cells] == expected
    assert [c.row for c in cells[::4]] == ["base", "a", "a=0.5, b=0.5", "b=0.25", "b=1"]
    # the seeds matter: a sampled cell is drawn from its own seed
    assert any(cells[i].token_ids != cells[i + 1].token_ids for i in range(0, len(cells), 2))
    # the greedy compare ran while the model was disabled: its adapter rows still ran them
    greedy = text_run.cells("greedy")
    want = []
    for weights in [{"a": 1.0}, {"a": 0.5, "b": 0.5}, None, {"b": 0.25}, {"b": 1.0}]:
        by_hand.setting(weights)
        want.append((weights, by_hand.generate(["the cat"], 3)[0]))
    assert [(c.adapters, c.token_ids) for c in greedy] == want
    assert len({tuple(ids) for _, ids in want}) > 2  # the rows really differ


def test_the_model_is_as_it_was_after_a_compare(text_run: runner.Run) -> None:
    by_hand = ByHand()
    prompts = ["the cat", "once upon a time"]
    by_hand.setting({"a": 0.7})
    blended = by_hand.generate(prompts, 3)
    by_hand.setting(None)
    base = by_hand.generate(prompts, 3)
    assert blended != base
    assert _tokens(text_run, "before") == blended
    assert _tokens(text_run, "after") == blended  # same adapters and weights, enabled
    assert _tokens(text_run, "after-off") == base  # a compare while disabled left it disabled
    assert _tokens(text_run, "after-on") == blended  # and enable restores {a: 0.7}
    steps = {s.id: s for s in text_run.manifest.steps}
    assert steps["sampled"].active_adapters == {"a": 0.7}
    assert steps["greedy"].active_adapters is None


def test_text_compare_record(text_run: runner.Run) -> None:
    step = next(s for s in text_run.manifest.steps if s.id == "sampled")
    assert step.arguments["rows"] == ["base", "a", "a=0.5, b=0.5", "b=0.25", "b=1"]
    assert step.arguments["adapters"] == [None, {"a": 1.0}, {"a": 0.5, "b": 0.5}] + [
        {"b": 0.25},
        {"b": 1.0},
    ]
    assert [o.path for o in step.outputs] == ["outputs/04-sampled/cells.jsonl"]
    lines = (text_run.dir / step.outputs[0].path).read_bytes().splitlines(keepends=True)
    listed = step.execution["cells"]
    assert len(lines) == len(listed) == 20
    import hashlib

    assert [c["sha256"] for c in listed] == [hashlib.sha256(x).hexdigest() for x in lines]
    first = json.loads(lines[0])
    assert list(first) == ["row", "adapters", "prompt", "seed", "text", "token_ids"]
    assert (first["row"], first["adapters"], first["seed"]) == ("base", None, 0)
    texts = text_run.outputs["sampled"]  # the cells, as a generate step's texts
    assert [t.token_ids for t in texts] == [c.token_ids for c in text_run.cells("sampled")]
    assert text_run.cells(4) == text_run.cells("04-sampled") == text_run.cells("sampled")
    with pytest.raises(runner.RunDirError, match="compare steps: \\['sampled', 'greedy'\\]"):
        text_run.cells("before")
    assert runner.verify(text_run).ok


# --- images: cells equal generate steps, and the grid (models) -----------------------------

PROMPTS = ["a red cube", "<img src=x onerror=alert(1)> & a blue ball on a long table in a room"]
ROWS: list[tuple[str, str | None]] = [  # (label, what set_adapters writes; None: disable)
    ("base", None),
    ("a", "a"),
    ("b=0.5", "{b: 0.5}"),
    ("b=1", "{b: 1.0}"),
]
IMAGE_HEAD = """\
version: 1
name: compare-image
description: "Two tiny LoRAs <b>side by side</b>"
seed: 0
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
  b: {path: builtin:tiny-sd-lora-b}
defaults:
  generate: {num_inference_steps: 2, num_images_per_prompt: 2}
steps:
  - op: load
    adapters: [a, b]
"""


def image_spec() -> str:
    """A compare, then the same cells as set_adapters (or disable) + generate steps."""
    text = IMAGE_HEAD + (
        "  - op: compare\n    id: styles\n    adapters: [base, a, {b: [0.5, 1.0]}]\n"
        f"    prompt: {json.dumps(PROMPTS)}\n    seed: 5\n"
    )
    for r, (_, chosen) in enumerate(ROWS):
        if chosen is None:
            text += "  - op: disable\n"
        else:
            text += f"  - op: set_adapters\n    adapters: {chosen}\n  - op: enable\n"
        for p, prompt in enumerate(PROMPTS):
            text += f"  - op: generate\n    id: r{r}-p{p}\n    prompt: {json.dumps(prompt)}\n"
            text += "    seed: 5\n"
    return text


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> runner.Run:
    tmp = tmp_path_factory.mktemp("compare-image")
    return runner.run(spec_file(tmp, image_spec()), out=tmp / "runs")


def _pixels(file: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(file) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_image_cells_equal_the_equivalent_generate_steps(image_run: runner.Run) -> None:
    cells = image_run.cells("styles")
    assert len(cells) == len(ROWS) * len(PROMPTS) * 2
    index = 0
    for r, (label, _) in enumerate(ROWS):
        for p, prompt in enumerate(PROMPTS):
            alone = image_run.outputs[f"r{r}-p{p}"]
            for k, picture in enumerate(alone):
                cell = cells[index]
                index += 1
                assert (cell.row, cell.prompt, cell.seed) == (label, prompt, 5 + k)
                assert picture.seed == 5 + k  # image k of a cell is drawn from SEED + k
                assert cell.file is not None
                diff = abs(_pixels(cell.file) - _pixels(picture.file)).max()
                assert diff <= 1, (label, prompt, k, diff)
    assert cells[0].adapters is None and cells[4].adapters == {"a": 1.0}
    from runner.record.pnginfo import read_png_metadata

    info = read_png_metadata(cells[-1].file)  # type: ignore[arg-type]
    assert (info["row"], json.loads(info["adapters"]), info["seed"]) == ("b=1", {"b": 1.0}, "6")
    assert info["prompt"] == PROMPTS[1]


def test_grid_png_has_a_labelled_tile_per_cell(image_run: runner.Run) -> None:
    import numpy as np
    from PIL import Image

    from runner.report import grid

    cells = image_run.cells("styles")
    labels = [label for label, _ in ROWS]
    per_row = len(cells) // len(labels)
    columns = [c.prompt for c in cells[:per_row]]
    spec = grid.layout((64, 64), labels, columns)
    tile_w, tile_h = spec.tile
    assert tile_w >= grid.MIN_TILE  # 64 px images are enlarged so labels fit beside them
    folder = image_run.dir / "outputs/02-styles"
    with Image.open(folder / "grid.png") as opened:
        picture = np.asarray(opened.convert("RGB")).astype(int)
    height, width, _ = picture.shape
    assert (width, height) == (
        spec.left + per_row * (tile_w + grid.GAP),
        spec.top + len(labels) * (tile_h + grid.GAP),
    )
    for n, cell in enumerate(cells):
        r, c = divmod(n, per_row)
        x, y = spec.left + c * (tile_w + grid.GAP), spec.top + r * (tile_h + grid.GAP)
        assert cell.file is not None
        with Image.open(cell.file) as tile:
            want = np.asarray(tile.convert("RGB").resize(spec.tile, Image.Resampling.NEAREST))
        assert (picture[y : y + tile_h, x : x + tile_w] == want).all(), (r, c)
    # the label bands carry ink: the setting on the left, the prompt and seed on top
    assert (picture[spec.top :, : spec.left] < 128).any()
    assert (picture[: spec.top, spec.left :] < 128).any()


def test_image_compare_record_lists_every_file_and_cell(image_run: runner.Run) -> None:
    step = next(s for s in image_run.manifest.steps if s.id == "styles")
    paths = [o.path for o in step.outputs]
    folder = "outputs/02-styles"
    assert paths == (
        [f"{folder}/cells.jsonl"]
        + [f"{folder}/{n}.png" for n in range(16)]
        + [f"{folder}/diff-{n}.png" for n in range(4, 16)]  # each non-base cell's difference
        + [f"{folder}/grid.png"]
    )
    pngs = {o.path.rsplit("/", 1)[1]: o.sha256 for o in step.outputs}
    lines = [json.loads(x) for x in (image_run.dir / paths[0]).read_text().splitlines()]
    assert [x["image"] for x in lines] == [f"{n}.png" for n in range(16)]
    assert [c["sha256"] for c in step.execution["cells"]] == [pngs[x["image"]] for x in lines]
    # the rows mixed in pipeline calls: b at 0.5 and at 1 cannot share one
    assert (step.execution["executor"], step.execution["calls"]) == ("mixed", 2)
    batches = [(b["rows"], b["mixed"]) for b in step.execution["batches"]]
    assert batches == [(["base", "a", "b=0.5"], True), (["b=1"], True)]
    assert runner.verify(image_run).ok
