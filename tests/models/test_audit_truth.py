"""Audits that tell the whole truth: a reproduction on other inputs is none, and `diff` on a
compare step compares its cells by row, prompt, seed and image, with every field, and PNG
text chunks beside the pixels."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

import runner
from runner import builtin
from runner.audit.outputs import OutputDiff, compare_image
from runner.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


COMPARE = """\
version: 1
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: {adapter}}}
steps:
  - {{op: load, adapters: a}}
  - op: compare
    id: rows
    adapters: [base, a]
    prompt: The cat
    seed: {seeds}
    max_new_tokens: 3
"""


def run_spec(
    tmp_path: Path, name: str, seeds: str, adapter: str = "builtin:tiny-causal-lm-lora-a"
) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(COMPARE.format(seeds=seeds, adapter=adapter))
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


@pytest.mark.models
def test_a_seed_list_changed_is_reported_cell_by_cell(tmp_path: Path) -> None:
    # Greedy text does not depend on the seed: every token of both runs is the same.
    a, b = run_spec(tmp_path, "a", "[1, 2]"), run_spec(tmp_path, "b", "[1, 3]")
    report = runner.diff(a, b)
    (cells,) = [d for d in report.outputs if d.path.endswith("cells.jsonl")]
    assert cells.status == "differs"
    assert cells.detail == "4 of 6 cells differ"
    assert cells.cells == [
        'row base / prompt "The cat" / seed 2: only in A',
        'row a / prompt "The cat" / seed 2: only in A',
        'row base / prompt "The cat" / seed 3: only in B',
        'row a / prompt "The cat" / seed 3: only in B',
    ]
    code, out, _ = invoke("diff", str(a), str(b))
    assert code == 1
    assert '    row a / prompt "The cat" / seed 3: only in B' in out


@pytest.mark.models
def test_differing_cells_are_named_up_to_a_cap_and_the_rest_counted(tmp_path: Path) -> None:
    a = run_spec(tmp_path, "a", "[1, 2]")
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    cells_file = b / "outputs" / "02-rows" / "cells.jsonl"
    cells = [json.loads(line) for line in cells_file.read_text().splitlines()]
    made = [{**cells[0], "seed": 100 + k} for k in range(21)]
    changed = [{**cell, "text": cell["text"] + "!"} for cell in cells]
    cells_file.write_text("".join(json.dumps(c) + "\n" for c in changed + made))
    (diffed,) = [d for d in runner.diff(a, b).outputs if d.path.endswith("cells.jsonl")]
    assert diffed.cells_differing == 25 and len(diffed.cells) == 20
    assert diffed.cells[0] == 'row base / prompt "The cat" / seed 1: text differ'
    code, out, _ = invoke("diff", str(a), str(b))
    assert code == 1 and "    ... and 5 more cells" in out


@pytest.mark.models
def test_reproduce_on_a_changed_input_says_so_and_exits_1(tmp_path: Path) -> None:
    adapter = tmp_path / "lora"
    shutil.copytree(builtin.resolve("tiny-causal-lm-lora-a"), adapter)
    first = run_spec(tmp_path, "spec", "1", adapter="./lora")
    code, out, _ = invoke("reproduce", str(first))
    assert code == 0 and "every output is identical" in out  # the same inputs: a reproduction

    (adapter / "README.md").write_text("a model card that changes no output\n")
    code, out, _ = invoke("reproduce", str(first))
    assert code == 1
    assert "inputs changed since the run, so this is no reproduction:" in out
    assert "adapter 'a' file README.md: sha256 absent ->" in out
    assert "every output is identical, but from other inputs" in out
    assert re.search(r"^outputs: (\d+) of \1 identical$", out, re.MULTILINE)


def png(seed: str, prompt: str = "a cat", shade: int = 10) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", prompt)
    info.add_text("seed", seed)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_png_text_chunks_are_compared_as_well_as_pixels(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    a.write_bytes(png("1"))
    b.write_bytes(png("2"))  # the same pixels, another seed in its text
    c.write_bytes(png("1"))
    same, other = OutputDiff("x", "image", "same"), OutputDiff("x", "image", "same")
    compare_image(a, c, same)
    compare_image(a, b, other)
    assert same.status == "same"
    assert (other.status, other.detail, other.max_diff) == ("differs", "PNG text seed differ", 0)


def test_pixels_and_text_differing_together_are_both_said(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png("1", "a cat", shade=10))
    b.write_bytes(png("1", "a dog", shade=12))
    diff = OutputDiff("x", "image", "same")
    compare_image(a, b, diff)
    assert diff.detail.startswith("max abs diff 2, PSNR ")
    assert diff.detail.endswith("; PNG text prompt differ")
