"""Weights per component and per block in the spec: what validation refuses (one located
line each), how compare rows sweep inside them, and the labels they get."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.spec import weights
from runner.spec.load import load


def spec(tmp_path: Path, family: str, model: str, steps: str) -> Path:
    file = tmp_path / "spec.yaml"
    adapter = (
        "builtin:tiny-causal-lm-lora-a" if family == "transformers" else "builtin:tiny-sd-lora-a"
    )
    file.write_text(
        f"version: 1\nmodel: {{family: {family}, path: {model}}}\n"
        f"adapters:\n  a: {{path: {adapter}}}\n"
        f"steps:\n  - {{op: load, adapters: a}}\n{steps}"
    )
    return file


def errors(file: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(file)
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_per_block_weights_on_a_pipeline_without_a_unet_name_it(tmp_path: Path) -> None:
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "FluxPipeline",
                "transformer": ["diffusers", "FluxTransformer2DModel"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    file = spec(
        tmp_path,
        "diffusers",
        str(flux),
        "  - {op: set_adapters, adapters: {a: {unet: {up: 0.5}}}}\n"
        "  - {op: set_adapters, adapters: {a: {transformer: {down: 0.5}}}}\n"
        "  - {op: compare, adapters: [{a: {transformer: 0.5, vae: [1, 2]}}], prompt: x}\n",
    )
    assert errors(file) == [
        "7: FluxPipeline has no component 'unet'; its components: text_encoder, transformer, vae",
        "8: per-block weights are for the unet only (diffusers' block mapping covers UNet "
        "models only), not for transformer",
        "9: unknown key 'vae' in step 4's adapters[0].a; allowed: steps, text_encoder, "
        "text_encoder_2, text_encoder_3, transformer, transformer_2, unet, weight",
    ]


def test_weights_per_component_are_refused_for_transformers(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "transformers",
        "builtin:tiny-causal-lm",
        "  - {op: set_adapters, adapters: {a: {unet: 0.5}}}\n"
        "  - {op: compare, adapters: [{a: {text_encoder: [0.5, 1]}}], prompt: x}\n"
        "  - {op: score, adapters: [base, {a: {unet: 0.5}}], context: x, continuation: y}\n",
    )
    refused = (
        "weights per component are for diffusers pipelines; a transformers adapter takes one number"
    )
    assert errors(file) == [f"7: {refused}", f"8: {refused}", f"9: {refused}"]


def test_a_side_takes_blocks_by_number_only(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "diffusers",
        "builtin:tiny-sd",
        "  - {op: set_adapters, adapters: {a: {unet: {up: {first: 0.5}}}}}\n",
    )
    (line,) = errors(file)
    assert line.startswith("7: ") and "first" in line


def test_compare_rows_sweep_every_list_inside_a_mapping(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "diffusers",
        "builtin:tiny-sdxl",
        "  - op: compare\n"
        "    adapters:\n"
        "      - {a: {unet: [0.5, 1.0], text_encoder: [0, 0.3]}}\n"
        "      - {a: {unet: {mid: 0.9, up: {block_0: [[0.4, 0.8, 1.0], 0.5]}}}}\n"
        "    prompt: x\n",
    )
    file.write_text(file.read_text().replace("tiny-sd-lora-a", "tiny-sdxl-lora-a"))
    rows = load(file).steps[1].rows  # type: ignore[union-attr]
    assert [r.label for r in rows] == [
        "a unet=0.5 te=0",
        "a unet=0.5 te=0.3",
        "a unet=1 te=0",
        "a unet=1 te=0.3",
        "a unet.mid=0.9 unet.up.block_0=0.4/0.8/1",
        "a unet.mid=0.9 unet.up.block_0=0.5",
    ]
    assert rows[4].weights == (("a", {"unet": {"mid": 0.9, "up": {"block_0": [0.4, 0.8, 1.0]}}}),)
    assert rows[1].weights == (("a", {"unet": 0.5, "text_encoder": 0.3}),)


def test_the_count_of_a_sweep_inside_a_mapping() -> None:
    row = {"unet": [0.5, 1.0], "text_encoder": [0, 0.3, 1], "text_encoder_2": 0.2}
    assert weights.sweep_count(row, 100) == 6 == len(weights.sweep(row))
    assert weights.sweep_count({"unet": [1.0] * 50, "te": [1.0] * 50}, 100) == 101


def test_labels_and_written_forms() -> None:
    assert weights.shown("3d", {"unet": 0.8, "text_encoder": 0.3, "text_encoder_2": 0.3}) == (
        "3d unet=0.8 te=0.3 te2=0.3"
    )
    assert weights.shown("3d", 1.0) == "3d"
    assert weights.shown("3d", 1.0, bare_one=False) == "3d=1"
    assert weights.written({"unet": 0.5}) == '{"unet": 0.5}'
    assert weights.written(0.5) == "0.5"


def test_step_ranges_type_sweep_and_label(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "diffusers",
        "builtin:tiny-sd",
        "  - {op: set_adapters, adapters: {a: {weight: 0.8, steps: [0, 4]}}}\n"
        "  - op: compare\n"
        "    adapters:\n"
        "      - {a: {weight: [0.5, 1.0], steps: [2, 6]}}\n"
        "      - {a: {weight: {unet: 0.5}, steps: [0, 1]}}\n"
        "      - {a: {steps: [1, 3]}}\n"
        "    prompt: x\n",
    )
    steps = load(file).steps
    assert steps[1].weights == (("a", {"weight": 0.8, "steps": [0, 4]}),)  # type: ignore[union-attr]
    rows = steps[2].rows  # type: ignore[union-attr]
    assert [r.label for r in rows] == [
        "a=0.5 steps=2:6",
        "a=1 steps=2:6",
        "a unet=0.5 steps=0:1",
        "a=1 steps=1:3",
    ]
    assert rows[0].weights == (("a", {"weight": 0.5, "steps": [2, 6]}),)
    assert weights.steps_of({"steps": [1, 3]}) == (1, 3) and weights.steps_of(0.5) is None
    assert weights.unranged({"steps": [1, 3]}) == 1.0
    assert weights.unranged({"weight": {"unet": 0.5}, "steps": [1, 3]}) == {"unet": 0.5}


def test_bad_step_ranges_are_refused_at_validation(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "diffusers",
        "builtin:tiny-sd",
        "  - {op: set_adapters, adapters: {a: {weight: 0.8, steps: [4, 4]}}}\n"
        "  - {op: set_adapters, adapters: {a: {weight: 0.8}}}\n"
        "  - {op: set_adapters, adapters: {a: {unet: 0.8, steps: [0, 2]}}}\n"
        "  - {op: set_adapters, adapters: {a: {steps: [0, 2, 3]}}}\n"
        "  - {op: compare, adapters: [{a: {steps: [3, 1]}}], prompt: x}\n",
    )
    assert errors(file) == [
        "7: steps [4, 4]: the start must be below the stop (the adapter runs for steps start "
        "to stop - 1)",
        "8: weight: goes with steps: [start, stop]; without a range write the weight",
        "9: with steps, write the components inside weight: {weight: {unet: .., "
        "text_encoder: ..}, steps: [start, stop]}",
        "10: [0, 2, 3] is too long",
        "11: steps [3, 1]: the start must be below the stop (the adapter runs for steps start "
        "to stop - 1)",
    ]


def test_step_ranges_are_refused_for_transformers(tmp_path: Path) -> None:
    file = spec(
        tmp_path,
        "transformers",
        "builtin:tiny-causal-lm",
        "  - {op: set_adapters, adapters: {a: {weight: 0.8, steps: [0, 4]}}}\n",
    )
    assert errors(file) == [
        "7: step ranges (steps: [start, stop]) count a diffusers pipeline's denoising steps; "
        "a transformers adapter takes one number"
    ]
