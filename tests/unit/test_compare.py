"""op: compare: rows, the typed step, its cells against hand-written library calls and against
the equivalent set_adapters + generate steps, the grid, and the model state afterwards.

The golden error messages of invalid compares are tests/examples/invalid/compare-*.yaml
(run by test_spec_language). Tests that build a model carry the `models` mark.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.running import compare
from runner.spec import rows
from runner.spec.types import Compare

ROOT = Path(__file__).resolve().parents[2]

TEXT_HEAD = """\
version: 1
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  b: {path: builtin:tiny-causal-lm-lora-b}
"""


def spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text)
    return file


# --- rows and the typed step (fast) -------------------------------------------------------


def test_row_forms_expand_in_the_documented_order() -> None:
    assert rows.expand("base") == [None]
    assert rows.expand("a") == [(("a", 1.0),)]
    assert rows.expand(["a", "b"]) == [(("a", 1.0), ("b", 1.0))]
    assert rows.expand({"a": 0.7, "b": 0.5}) == [(("a", 0.7), ("b", 0.5))]
    # several lists: every combination, the first adapter's values varying slowest
    assert rows.expand({"a": [0.5, 1], "b": 0.3, "c": [0, 1]}) == [
        (("a", 0.5), ("b", 0.3), ("c", 0.0)),
        (("a", 0.5), ("b", 0.3), ("c", 1.0)),
        (("a", 1.0), ("b", 0.3), ("c", 0.0)),
        (("a", 1.0), ("b", 0.3), ("c", 1.0)),
    ]
    assert rows.count({"a": [0.5, 1], "b": 0.3, "c": [0, 1]}) == 4
    assert rows.label(None, mapping=False) == "base"
    assert rows.label((("3d", 1.0), ("cereal", 1.0)), mapping=False) == "3d, cereal"
    assert rows.label((("3d", 0.7), ("cereal", 1.0)), mapping=True) == "3d=0.7, cereal=1"


def test_compare_builds_a_typed_step_with_defaults_and_row_lines(tmp_path: Path) -> None:
    spec = runner.load_spec(
        spec_file(
            tmp_path,
            TEXT_HEAD + "defaults:\n  generate: {max_new_tokens: 4, prompt: [x, y]}\n"
            "steps:\n"
            "  - op: load\n"
            "    adapters: [a, b]\n"
            "  - op: compare\n"
            "    id: grid\n"
            "    adapters:\n"
            "      - base\n"
            "      - [a, b]\n"
            "      - {a: [0.25, 1.0], b: 0.5}\n"
            "    max_new_tokens: 6\n"
            "    max_cells: 20\n",
        )
    )
    step = spec.steps[1]
    assert isinstance(step, Compare)
    assert [(r.label, r.weights, r.line) for r in step.rows] == [
        ("base", None, 16),
        ("a, b", (("a", 1.0), ("b", 1.0)), 17),
        ("a=0.25, b=0.5", (("a", 0.25), ("b", 0.5)), 18),
        ("a=1, b=0.5", (("a", 1.0), ("b", 0.5)), 18),
    ]
    assert (step.prompts, step.seeds, step.args, step.id) == (
        ("x", "y"),
        (3,),
        {"max_new_tokens": 6},
        "grid",
    )
    cells = compare.plan(step)
    assert [(c.row.label, c.prompt, c.seed) for c in cells[:3]] == [
        ("base", "x", 3),
        ("base", "y", 3),
        ("a, b", "x", 3),
    ]
    assert len(cells) == 8
    # each cell is exactly the generate step that makes it alone
    alone = compare.cell_step(step, cells[3])
    assert (alone.prompts, alone.batch, alone.seed, alone.args) == (
        ("y",),
        False,
        3,
        {"max_new_tokens": 6},
    )


def test_the_contracts_example_is_valid(tmp_path: Path) -> None:
    # CONTRACT.md section 4's example, on builtin adapters: a setting may come twice (3d=1)
    spec = runner.load_spec(
        spec_file(
            tmp_path,
            "version: 1\nmodel: {family: diffusers, path: builtin:tiny-sdxl}\n"
            "adapters:\n  3d: {path: builtin:tiny-sdxl-lora-a}\n"
            "  cereal: {path: builtin:tiny-sdxl-lora-kohya}\n"
            "defaults: {generate: {num_inference_steps: 4}}\n"
            "steps:\n  - {op: load, adapters: [3d, cereal]}\n"
            "  - op: compare\n"
            "    id: styles\n"
            "    adapters:\n"
            "      - base\n"
            "      - 3d\n"
            "      - [3d, cereal]\n"
            "      - {3d: 0.7, cereal: 0.5}\n"
            "      - {3d: [0.25, 0.5, 1.0]}\n"
            '    prompt: ["sushi rolls in the form of panda heads", "a cabin in the snow"]\n'
            "    seed: [0, 1]\n"
            "    num_inference_steps: 30\n",
        )
    )
    step = spec.steps[1]
    assert isinstance(step, Compare)
    assert [r.label for r in step.rows] == [
        "base",
        "3d",
        "3d, cereal",
        "3d=0.7, cereal=0.5",
        "3d=0.25",
        "3d=0.5",
        "3d=1",
    ]
    assert len(compare.plan(step)) == 7 * 2 * 2 and step.args == {"num_inference_steps": 30}


def test_a_cell_takes_its_own_prompts_negative_prompt(tmp_path: Path) -> None:
    spec = runner.load_spec(
        spec_file(
            tmp_path,
            "version: 1\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
            "steps:\n  - op: compare\n    adapters: [base]\n    prompt: [p, q]\n"
            "    seed: [1, 2]\n    negative_prompt: [not p, not q]\n",
        )
    )
    step = spec.steps[0]
    assert isinstance(step, Compare)
    made = [compare.cell_step(step, c) for c in compare.plan(step)]
    assert [(g.prompts[0], g.seed, g.args["negative_prompt"]) for g in made] == [
        ("p", 1, "not p"),
        ("p", 2, "not p"),
        ("q", 1, "not q"),
        ("q", 2, "not q"),
    ]


def test_a_hostile_product_of_weight_lists_is_refused_without_expanding_it(
    tmp_path: Path,
) -> None:
    weights = "[" + ", ".join(str(i / 100) for i in range(100)) + "]"
    file = spec_file(
        tmp_path,
        TEXT_HEAD + "steps:\n  - {op: load, adapters: [a, b]}\n  - op: compare\n"
        f"    adapters: [{{a: {weights}, b: {weights}}}, {{a: {weights}, b: {weights}}}]\n"
        "    prompt: x\n",
    )
    started = time.perf_counter()
    problems = runner.validate(file)
    assert time.perf_counter() - started < 5
    assert [p.message for p in problems] == [
        "makes 20000 cells (20000 rows x 1 prompt x 1 seed), more than 10000; "
        "set max_cells: 20000 on the step to allow it"
    ]


def test_max_cells_opts_in_to_a_larger_compare(tmp_path: Path) -> None:
    weights = "[" + ", ".join(str(i / 1000) for i in range(1000)) + "]"
    text = (
        TEXT_HEAD + "steps:\n  - {op: load, adapters: [a, b]}\n  - op: compare\n"
        f"    adapters: [{{a: {weights}, b: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}}]\n"
        "    prompt: [x, y]\n"
    )
    assert runner.validate(spec_file(tmp_path, text)) != []
    assert runner.validate(spec_file(tmp_path, text + "    max_cells: 1000000\n")) == []


def test_resolved_json_holds_the_expanded_rows(tmp_path: Path) -> None:
    from runner.spec.types import resolved

    spec = runner.load_spec(
        spec_file(
            tmp_path,
            TEXT_HEAD + "steps:\n  - {op: load, adapters: [a, b]}\n"
            "  - {op: compare, adapters: [base, a, {b: [0.5, 1]}], prompt: x, seed: [1, 2]}\n",
        )
    )
    assert resolved(spec)["steps"][1] == {
        "op": "compare",
        "id": None,
        "line": 10,
        "adapters": ["base", {"a": 1.0}, {"b": 0.5}, {"b": 1.0}],
        "prompt": ["x"],
        "seed": [1, 2],
    }


def test_cell_writer_writes_pngs_as_they_come_and_a_grid_of_them(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from runner.backends.results import Picture
    from runner.record.cells import read
    from runner.record.recorder import Recorder
    from runner.report import grid

    spec = runner.load_spec(
        {
            "version": 1,
            "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
            "steps": [{"op": "compare", "adapters": ["base"], "prompt": "x"}],
        }
    )

    def image(seed: int) -> Image.Image:
        return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), np.uint8))

    labels = ["base", "a=0.5", "a"]
    adapters: list[dict[str, float] | None] = [None, {"a": 0.5}, {"a": 1.0}]
    recorder = Recorder.start(tmp_path, spec)
    writer = recorder.cell_writer("outputs/01-compare", labels)
    for r in range(3):
        for prompt in ("p", "q"):  # two images per cell: seeds 7 and 8
            writer.add(r, adapters[r], [Picture(image(10 * r + k), prompt, 7 + k) for k in (0, 1)])
        if r == 0:
            assert (recorder.run / "outputs/01-compare/3.png").is_file()  # written at once
    outputs, listed = writer.close()
    folder = recorder.run / "outputs/01-compare"
    cells = read(folder / "cells.jsonl")
    assert [(c.row, c.prompt, c.seed, c.image) for c in cells[:5]] == [
        ("base", "p", 7, "0.png"),
        ("base", "p", 8, "1.png"),
        ("base", "q", 7, "2.png"),
        ("base", "q", 8, "3.png"),
        ("a=0.5", "p", 7, "4.png"),
    ]
    assert [o.path.rsplit("/", 1)[1] for o in outputs] == (
        ["cells.jsonl"] + [f"{n}.png" for n in range(12)] + ["grid.png"]
    )
    assert len(listed) == 12 and listed[4]["sha256"] == outputs[5].sha256
    layout = grid.layout((40, 40), labels, ["p", "p", "q", "q"])
    with Image.open(folder / "grid.png") as opened:
        drawn = np.asarray(opened.convert("RGB"))
    tile_w, tile_h = layout.tile
    for n, cell in enumerate(cells):
        r, c = divmod(n, 4)
        x, y = layout.left + c * (tile_w + grid.GAP), layout.top + r * (tile_h + grid.GAP)
        with Image.open(folder / (cell.image or "")) as tile:
            want = np.asarray(tile.convert("RGB").resize(layout.tile, Image.Resampling.NEAREST))
        assert (drawn[y : y + tile_h, x : x + tile_w] == want).all(), (r, c)

    # a step stopped half way keeps its PNGs, described by cells.jsonl, and draws no grid
    writer = recorder.cell_writer("outputs/02-compare", labels)
    writer.add(0, None, [Picture(image(1), "p", 7)])
    outputs, _ = writer.close(complete=False)
    assert [o.path for o in outputs] == [
        "outputs/02-compare/cells.jsonl",
        "outputs/02-compare/0.png",
    ]
    assert len(read(recorder.run / outputs[0].path)) == 1


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


@pytest.mark.models
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


@pytest.mark.models
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


@pytest.mark.models
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
    with pytest.raises(KeyError, match="compare steps: \\['sampled', 'greedy'\\]"):
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


@pytest.mark.models
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


@pytest.mark.models
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


@pytest.mark.models
def test_image_compare_record_lists_every_file_and_cell(image_run: runner.Run) -> None:
    step = next(s for s in image_run.manifest.steps if s.id == "styles")
    paths = [o.path for o in step.outputs]
    folder = "outputs/02-styles"
    assert paths == (
        [f"{folder}/cells.jsonl"]
        + [f"{folder}/{n}.png" for n in range(16)]
        + [f"{folder}/grid.png"]
    )
    pngs = {o.path.rsplit("/", 1)[1]: o.sha256 for o in step.outputs}
    lines = [json.loads(x) for x in (image_run.dir / paths[0]).read_text().splitlines()]
    assert [x["image"] for x in lines] == [f"{n}.png" for n in range(16)]
    assert [c["sha256"] for c in step.execution["cells"]] == [pngs[x["image"]] for x in lines]
    # one pipeline call per row, every prompt and seed of the row in it
    assert (step.execution["executor"], step.execution["calls"]) == ("by_rows", 4)
    assert [b["rows"] for b in step.execution["batches"]] == [["base"], ["a"], ["b=0.5"], ["b=1"]]
    assert runner.verify(image_run).ok
