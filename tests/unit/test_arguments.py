"""A generating step's typed family arguments (runner.spec.arguments)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from commands import spec_file

import runner
from runner.spec.arguments import BY_FAMILY, ImageArguments, TextArguments
from runner.spec.types import Compare, Generate, resolved
from runner.spec.vocabulary import ARGUMENTS, FAMILIES


def test_each_family_class_holds_exactly_that_familys_arguments() -> None:
    for family in FAMILIES:
        held = [f.name for f in fields(BY_FAMILY[family]) if f.name != "order"]
        assert held == [name for name, (owner, _) in ARGUMENTS.items() if owner == family]


def test_the_written_mapping_keeps_the_keys_their_order_and_their_values(tmp_path: Path) -> None:
    spec = runner.load_spec(
        spec_file(
            tmp_path,
            "version: 1\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
            "defaults: {generate: {width: 64, guidance_scale: 7, num_inference_steps: 2}}\n"
            "steps:\n"
            "  - {op: generate, prompt: [p, q], negative_prompt: [not p, not q], height: 64,"
            " scheduler: {timestep_spacing: trailing, type: EulerDiscreteScheduler},"
            " num_inference_steps: 3}\n"
            "  - {op: compare, adapters: [base], prompt: p, seed: 1, lora_scale: 0.5}\n",
        )
    )
    generate, compare = spec.steps
    assert isinstance(generate, Generate) and isinstance(compare, Compare)
    args = generate.args
    assert isinstance(args, ImageArguments)
    assert args.negative_prompt == ("not p", "not q") and args.num_inference_steps == 3
    assert args.lora_scale is None and args.per_prompt == 1
    written = args.written()
    # defaults first, the step's own keys over them, in the order written
    assert list(written) == [
        "width",
        "guidance_scale",
        "num_inference_steps",
        "negative_prompt",
        "height",
        "scheduler",
    ]
    assert json.dumps(written) == (
        '{"width": 64, "guidance_scale": 7, "num_inference_steps": 3, "negative_prompt": '
        '["not p", "not q"], "height": 64, "scheduler": {"timestep_spacing": "trailing", '
        '"type": "EulerDiscreteScheduler"}}'
    )
    assert list(resolved(spec)["steps"][1])[-4:] == [
        "width",
        "guidance_scale",
        "num_inference_steps",
        "lora_scale",
    ]


def test_arguments_built_field_by_field_write_the_fields_given() -> None:
    assert TextArguments(chat=True, max_new_tokens=4).written() == {
        "max_new_tokens": 4,
        "chat": True,
    }
    assert TextArguments().written() == {} and TextArguments().per_prompt == 1
    assert ImageArguments(num_images_per_prompt=3).per_prompt == 3
