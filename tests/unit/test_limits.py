"""Limits that hold however large a spec asks to be: the cells of a compare step."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import runner
from runner.spec import rows, vocabulary

HEAD = """\
version: 1
seed: 3
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  b: {path: builtin:tiny-causal-lm-lora-b}
steps:
  - {op: load, adapters: [a, b]}
  - op: compare
"""


def _write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "spec.yaml"
    file.write_text(HEAD + text)
    return file


def _weights(n: int) -> str:
    return "[" + ", ".join(str(i / n) for i in range(n)) + "]"


def _validate_timed(file: Path) -> tuple[list[runner.Located], float, int]:
    """The problems, the seconds taken and the growth of the process's peak memory (KiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    problems = runner.validate(file)
    seconds = time.perf_counter() - started
    return problems, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before


def test_the_ceiling_is_in_the_schema_and_the_readme() -> None:
    assert vocabulary.CELLS_CEILING == 100_000
    text = (Path(__file__).resolve().parents[2] / "schemas" / "spec.schema.json").read_text()
    assert '"maximum": 100000' in text.split('"max_cells"')[1].split("}")[0]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "100,000" in readme.split("max_cells")[-2] + readme.split("max_cells")[-1]


def test_a_huge_max_cells_is_refused_fast_without_building_rows(tmp_path: Path) -> None:
    # 1000 x 1000 weights: a million rows; max_cells: 10**21 once let validate build them all.
    file = _write(
        tmp_path,
        f"    adapters: [{{a: {_weights(1000)}, b: {_weights(1000)}}}]\n"
        "    prompt: x\n    max_cells: 1000000000000000000000\n",
    )
    problems, seconds, grown = _validate_timed(file)
    assert seconds < 5
    assert grown < 200_000  # KiB: building the million rows took gigabytes
    messages = {p.path: p.message for p in problems}
    assert messages["steps[1].max_cells"] == "must be <= 100000, found 1000000000000000000000"
    assert messages["steps[1].adapters"] == (
        "makes 1000000 cells (1000000 rows x 1 prompt x 1 seed); one compare step makes at "
        "most 100000: split it into several compare steps"
    )


def test_the_refusal_never_suggests_a_max_cells_past_the_ceiling(tmp_path: Path) -> None:
    file = _write(
        tmp_path, f"    adapters: [{{a: {_weights(400)}, b: {_weights(400)}}}]\n    prompt: x\n"
    )
    (problem,) = runner.validate(file)
    assert problem.path == "steps[1].adapters"
    assert "max_cells" not in problem.message
    assert "at most 100000" in problem.message


def test_up_to_the_ceiling_max_cells_is_still_suggested(tmp_path: Path) -> None:
    file = _write(
        tmp_path, f"    adapters: [{{a: {_weights(300)}, b: {_weights(300)}}}]\n    prompt: x\n"
    )
    (problem,) = runner.validate(file)
    assert problem.message.endswith("set max_cells: 90000 on the step to allow it")
    allowed = _write(
        tmp_path,
        f"    adapters: [{{a: {_weights(300)}, b: {_weights(300)}}}]\n"
        "    prompt: x\n    max_cells: 100000\n",
    )
    assert runner.validate(allowed) == []


def test_an_astronomical_product_of_weight_lists_is_counted_with_early_exit(
    tmp_path: Path,
) -> None:
    # 300 adapters with 10 weights each in one row: 10**300 rows, and ten such rows.
    names = [f"n{i}" for i in range(300)]
    row = "{" + ", ".join(f"{n}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" for n in names) + "}"
    adapters = "".join(f"  {n}: {{path: builtin:tiny-causal-lm-lora-a}}\n" for n in names)
    text = (
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        f"adapters:\n{adapters}steps:\n  - {{op: load, adapters: [{', '.join(names)}]}}\n"
        f"  - op: compare\n    adapters: [{', '.join([row] * 10)}]\n    prompt: x\n"
    )
    file = tmp_path / "many.yaml"
    file.write_text(text)
    problems, seconds, _ = _validate_timed(file)
    assert seconds < 10
    assert [p.message for p in problems if p.path == "steps[1].adapters"] == [
        "makes more than 1000000000000 cells (more than 1000000000000 rows x 1 prompt x 1 "
        "seed); one compare step makes at most 100000: split it into several compare steps"
    ]


def test_count_stops_past_its_cap() -> None:
    huge = {f"a{i}": list(range(10)) for i in range(10_000)}
    started = time.perf_counter()
    assert rows.count(huge, 1000) == 1001
    assert time.perf_counter() - started < 0.1
    assert rows.count({"a": [1, 2], "b": [1, 2, 3]}, 1000) == 6
    assert rows.count("a", 1000) == 1
