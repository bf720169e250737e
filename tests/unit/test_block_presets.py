"""LoRA Block Weight presets: each as the diffusers mapping written out by hand from the
extension's table, labels and sweeps, and what validation refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.spec import block_presets, weights
from runner.spec.load import load


def by_hand(base: float, down: list[float], mid: float, up: list[float]) -> dict[str, object]:
    """BASE; IN01 IN02, IN04 IN05, IN07 IN08; M00; OUT03-05, OUT06-08, OUT09-11."""
    return {
        "text_encoder": base,
        "unet": {
            "down": {"block_0": down[0:2], "block_1": down[2:4], "block_2": down[4:6]},
            "mid": mid,
            "up": {"block_1": up[0:3], "block_2": up[3:6], "block_3": up[6:9]},
        },
    }


OFF, ON = 0.0, 1.0
HAND = {
    "NONE": by_hand(OFF, [OFF] * 6, OFF, [OFF] * 9),
    "ALL": by_hand(ON, [ON] * 6, ON, [ON] * 9),
    "INS": by_hand(ON, [ON, ON, ON, OFF, OFF, OFF], OFF, [OFF] * 9),
    "IND": by_hand(ON, [OFF, OFF, OFF, ON, ON, ON], OFF, [OFF] * 9),
    "INALL": by_hand(ON, [ON] * 6, OFF, [OFF] * 9),
    "MIDD": by_hand(ON, [OFF, OFF, OFF, ON, ON, ON], ON, [ON, ON, ON, ON, OFF, OFF, OFF, OFF, OFF]),
    "OUTD": by_hand(ON, [OFF] * 6, OFF, [ON, ON, ON, ON, OFF, OFF, OFF, OFF, OFF]),
    "OUTS": by_hand(ON, [OFF] * 6, OFF, [OFF, OFF, OFF, OFF, ON, ON, ON, ON, ON]),
    "OUTALL": by_hand(ON, [OFF] * 6, OFF, [ON] * 9),
    "ALL0.5": by_hand(0.5, [0.5] * 6, 0.5, [0.5] * 9),
}


@pytest.mark.parametrize("name", list(HAND))
def test_each_preset_is_the_extensions_line_as_diffusers_blocks(name: str) -> None:
    assert block_presets.blocks(name) == HAND[name]


def test_the_table_holds_the_extensions_presets_and_no_more() -> None:
    assert list(block_presets.PRESETS) == list(HAND)


def test_expanded_keeps_a_text_encoder_weight_written_beside_it() -> None:
    midd = HAND["MIDD"]
    assert block_presets.expanded({"unet": {"preset": "MIDD"}}, True) == midd
    beside = block_presets.expanded({"unet": {"preset": "MIDD"}, "text_encoder": 0.3}, True)
    assert beside == {**midd, "text_encoder": 0.3}
    # an adapter without text encoder layers: BASE has nothing to scale
    assert block_presets.expanded({"unet": {"preset": "MIDD"}}, False) == {"unet": midd["unet"]}


def spec(tmp_path: Path, model: str, steps: str) -> Path:
    file = tmp_path / "spec.yaml"
    file.write_text(
        f"version: 1\nmodel: {{family: diffusers, path: {model}}}\n"
        "adapters:\n  a: {path: builtin:tiny-sd-lora-a}\n"
        f"steps:\n  - {{op: load, adapters: a}}\n{steps}"
    )
    return file


def pipeline(tmp_path: Path, name: str, down: list[str], layers: int) -> Path:
    folder = tmp_path / name
    (folder / "unet").mkdir(parents=True)
    index = {"_class_name": name, "unet": ["diffusers", "UNet2DConditionModel"]}
    index["text_encoder"] = ["transformers", "CLIPTextModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    up = list(reversed([t.replace("Down", "Up") for t in down]))
    config = {"down_block_types": down, "up_block_types": up, "layers_per_block": layers}
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    return folder


def errors(file: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(file)
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_presets_label_and_sweep_in_compare_rows(tmp_path: Path) -> None:
    sd1 = pipeline(tmp_path, "StableDiffusionPipeline", list(block_presets.SD1_DOWN), 2)
    file = spec(
        tmp_path,
        str(sd1),
        "  - {op: set_adapters, adapters: {a: {unet: {preset: MIDD}, text_encoder: 0.5}}}\n"
        "  - {op: compare, adapters: [{a: {unet: {preset: [MIDD, OUTD]}}}], prompt: x}\n",
    )
    steps = load(file).steps
    assert steps[1].weights == (("a", {"unet": {"preset": "MIDD"}, "text_encoder": 0.5}),)  # type: ignore[union-attr]
    rows = steps[2].rows  # type: ignore[union-attr]
    assert [r.label for r in rows] == ["a unet=MIDD", "a unet=OUTD"]
    assert weights.shown("a", {"unet": {"preset": "MIDD"}, "text_encoder": 0.5}) == (
        "a unet=MIDD te=0.5"
    )


def test_unknown_presets_and_presets_beside_blocks_are_refused(tmp_path: Path) -> None:
    sd1 = pipeline(tmp_path, "StableDiffusionPipeline", list(block_presets.SD1_DOWN), 2)
    file = spec(
        tmp_path,
        str(sd1),
        "  - {op: set_adapters, adapters: {a: {unet: {preset: midd}}}}\n"
        "  - {op: set_adapters, adapters: {a: {unet: {preset: MIDD, mid: 0.5}}}}\n"
        "  - {op: compare, adapters: [{a: {unet: {preset: [ALL, OUTDD]}}}], prompt: x}\n"
        "  - {op: set_adapters, adapters: {a: {text_encoder: {preset: ALL}}}}\n",
    )
    presets = "presets: NONE, ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, ALL0.5"
    assert errors(file) == [
        f"7: unknown block weight preset 'midd'; did you mean MIDD? {presets}",
        "8: a preset stands alone: write the preset or mid",
        f"9: unknown block weight preset 'OUTDD'; did you mean OUTD? {presets}",
        "10: per-block weights are for the unet only (diffusers' block mapping covers UNet "
        "models only), not for text_encoder",
    ]


def test_a_preset_on_a_unet_of_another_layout_names_it(tmp_path: Path) -> None:
    xl = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    sdxl = pipeline(tmp_path, "StableDiffusionXLPipeline", xl, 2)
    file = spec(
        tmp_path, str(sdxl), "  - {op: set_adapters, adapters: {a: {unet: {preset: ALL}}}}\n"
    )
    assert errors(file) == [
        "7: block weight presets are for SD 1.x UNets (down blocks CrossAttnDownBlock2D, "
        "CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D, 2 layers each); "
        "StableDiffusionXLPipeline's unet has down blocks DownBlock2D, CrossAttnDownBlock2D, "
        "CrossAttnDownBlock2D, 2 layers each"
    ]
