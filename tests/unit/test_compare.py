"""op: compare: rows, the typed step and its cells, the cell writer, without a model.

The golden error messages of invalid compares are tests/examples/invalid/compare-*.yaml
(run by test_spec_language). The cells on real models are tests/models/test_compare_cells.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from commands import TEXT_HEAD, spec_file

import runner
from runner.running import compare
from runner.spec import rows
from runner.spec.arguments import TextArguments
from runner.spec.types import Compare

ROOT = Path(__file__).resolve().parents[2]

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
    assert rows.count({"a": [0.5, 1], "b": 0.3, "c": [0, 1]}, 100) == 4
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
    assert (step.prompts, step.seeds, step.args.written(), step.id) == (
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
        TextArguments(max_new_tokens=6),
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
    assert len(compare.plan(step)) == 7 * 2 * 2 and step.args.written() == {
        "num_inference_steps": 30
    }


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
    assert [(g.prompts[0], g.seed, g.args.written()["negative_prompt"]) for g in made] == [
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
    assert runner.validate(spec_file(tmp_path, text + "    max_cells: 100000\n")) == []


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

    from runner.record.cells import read
    from runner.record.recorder import Recorder
    from runner.report import grid
    from runner.results import GeneratedImage
    from runner.running.cellwriter import CellWriter

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
    writer = CellWriter(recorder, "outputs/01-compare", labels)
    for r in range(3):
        for prompt in ("p", "q"):  # two images per cell: seeds 7 and 8
            writer.add(
                r, adapters[r], [GeneratedImage(image(10 * r + k), prompt, 7 + k) for k in (0, 1)]
            )
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
    writer = CellWriter(recorder, "outputs/02-compare", labels)
    writer.add(0, None, [GeneratedImage(image(1), "p", 7)])
    outputs, _ = writer.close(complete=False)
    assert [o.path for o in outputs] == [
        "outputs/02-compare/cells.jsonl",
        "outputs/02-compare/0.png",
    ]
    assert len(read(recorder.run / outputs[0].path)) == 1
