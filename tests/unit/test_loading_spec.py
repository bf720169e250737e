"""Model options in the spec language and the record, without a model (the unit tier).

A scheduler by name, components left out and the attention implementation: how they are
typed, resolved, named in a PNG's infotext, and told apart by `runner diff`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runner.audit import diff as audit
from runner.errors import SpecError
from runner.record import manifest as m
from runner.record.pnginfo import infotext, parse_parameters, png_bytes, read_png_metadata
from runner.record.samplers import sampler_name
from runner.results import GeneratedImage, SchedulerUsed
from runner.spec.arguments import ImageArguments
from runner.spec.load import load
from runner.spec.schema import schema
from runner.spec.types import Generate, Scheduler, resolved

SPEC = """\
version: 1
model:
  family: diffusers
  path: builtin:tiny-sd
  scheduler:
    type: DPMSolverMultistepScheduler
    use_karras_sigmas: true
  components: {safety_checker: null, feature_extractor: null}
defaults:
  generate: {num_inference_steps: 2}
steps:
  - op: generate
    prompt: a cat
  - op: generate
    prompt: a cat
    scheduler: {type: EulerAncestralDiscreteScheduler, timestep_spacing: trailing}
"""


def test_model_options_become_typed_and_resolve_as_written(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text(SPEC)
    spec = load(file)
    assert spec.model.scheduler == Scheduler(
        "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}
    )
    assert spec.model.components == ("safety_checker", "feature_extractor")
    assert spec.model.attn_implementation is None
    first, second = spec.steps
    assert isinstance(first, Generate) and isinstance(second, Generate)
    assert isinstance(first.args, ImageArguments) and isinstance(second.args, ImageArguments)
    assert first.args.scheduler is None  # the model's scheduler: nothing to pass
    written = {"type": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"}
    assert second.args.scheduler == written
    assert Scheduler.from_written(written).written() == written

    data = json.loads(json.dumps(resolved(spec)))  # resolved.json is plain JSON
    assert data["model"]["scheduler"] == {
        "type": "DPMSolverMultistepScheduler",
        "use_karras_sigmas": True,
    }
    assert data["model"]["components"] == {"safety_checker": None, "feature_extractor": None}
    assert data["steps"][1]["scheduler"] == written


def test_a_transformers_model_takes_attn_implementation(tmp_path: Path) -> None:
    file = tmp_path / "spec.yaml"
    file.write_text(
        "version: 1\n"
        "model: {family: transformers, path: builtin:tiny-causal-lm, attn_implementation: eager}\n"
        "steps: [{op: generate, prompt: hi}]\n"
    )
    spec = load(file)
    assert spec.model.attn_implementation == "eager"
    assert (spec.model.scheduler, spec.model.components) == (None, ())


def test_every_generating_op_takes_a_scheduler_of_diffusers_only(tmp_path: Path) -> None:
    definitions = schema()["definitions"]
    generate, compare = (
        definitions[op]["properties"]["scheduler"] for op in ("generate", "compare")
    )
    assert generate["required"] == compare["required"] == ["type"]
    assert generate["properties"] == compare["properties"]  # one vocabulary for both ops
    names = generate["properties"]["type"]["enum"]
    assert names == sorted(names) and len(names) == len(set(names))
    # a few of diffusers' schedulers, by the names its docs give them; the whole list is held
    # to diffusers itself in tests/models/test_loading.py
    assert {
        "DDIMScheduler",
        "DPMSolverMultistepScheduler",
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "LCMScheduler",
        "PNDMScheduler",
        "UniPCMultistepScheduler",
    } <= set(names)
    assert not [name for name in names if not name.endswith("Scheduler")]
    file = tmp_path / "spec.yaml"  # and refused for the other family
    file.write_text(
        "version: 1\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        "steps: [{op: generate, prompt: hi, scheduler: {type: DDIMScheduler}}]\n"
    )
    with pytest.raises(SpecError) as refused:
        load(file)
    assert "'scheduler' is a diffusers generate argument, but model.family is transformers" in (
        str(refused.value)
    )


@pytest.mark.parametrize(
    ("scheduler", "config", "name"),
    [
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2},
            "DPM++ 2M",
        ),
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
            "DPM++ 2M Karras",
        ),
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
            "DPM++ 2M SDE Karras",
        ),
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
            "DPM++ 3M SDE",
        ),
        # another sigma schedule, or another solver, is no sampler A1111 names
        (
            "DPMSolverMultistepScheduler",
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_exponential_sigmas": True},
            None,
        ),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "solver_order": 2}, None),
        ("EulerAncestralDiscreteScheduler", {"use_karras_sigmas": False}, "Euler a"),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": False}, "Euler"),
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, None),
        ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}, "DPM2 a Karras"),
        ("DDIMScheduler", {"prediction_type": "v_prediction"}, "DDIM"),
        ("PNDMScheduler", {}, "PLMS"),
        ("UniPCMultistepScheduler", {}, "UniPC"),
        ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, None),
    ],
)
def test_sampler_names(scheduler: str, config: dict[str, Any], name: str | None) -> None:
    assert sampler_name(scheduler, config) == name


def picture(used: SchedulerUsed | None) -> GeneratedImage:
    params = {"num_inference_steps": 2, "guidance_scale": 7.5, "width": 8, "height": 8}
    params["scheduler"] = used.type if used else "DDIMScheduler"
    return GeneratedImage(Image.new("RGB", (8, 8)), "a cat", 3, params, used)


KARRAS = SchedulerUsed(
    "DPMSolverMultistepScheduler",
    {
        "algorithm_type": "dpmsolver++",
        "solver_order": 2,
        "use_karras_sigmas": True,
        "lambda_min_clipped": "-inf",
    },
)


def test_png_provenance_names_the_sampler_and_holds_the_scheduler(tmp_path: Path) -> None:
    text = infotext(picture(KARRAS), None, "0.1.0")
    assert parse_parameters(text)["Sampler"] == "DPM++ 2M Karras"
    flow = SchedulerUsed("FlowMatchEulerDiscreteScheduler", {"shift": 3.0})
    assert parse_parameters(infotext(picture(flow), None, "0.1.0"))["Sampler"] == (
        "FlowMatchEulerDiscreteScheduler"
    )

    file = tmp_path / "0.png"
    file.write_bytes(png_bytes(picture(KARRAS), adapters=None, spec_sha256="a", runner_version="0"))
    chunks = read_png_metadata(file)
    assert chunks["scheduler"] == "DPMSolverMultistepScheduler"
    assert json.loads(chunks["scheduler_config"]) == KARRAS.config

    # a picture that does not know its scheduler's config keeps the class name
    assert "scheduler" not in read_chunks(tmp_path, picture(None))
    assert parse_parameters(infotext(picture(None), None, "0"))["Sampler"] == "DDIMScheduler"


def read_chunks(folder: Path, pic: GeneratedImage) -> dict[str, str]:
    file = folder / "plain.png"
    file.write_bytes(png_bytes(pic, adapters=None, spec_sha256="a", runner_version="0"))
    return read_png_metadata(file)


def manifest(
    setup: dict[str, Any] | None, step_scheduler: dict[str, Any] | None = None
) -> m.Manifest:
    data: dict[str, Any] = {
        "schema_version": m.SCHEMA_VERSION,
        "status": "succeeded",
        "started": "2025-01-01T00:00:00Z",
        "runner": {"version": "0.1.0"},
        "spec": {"file": "/x/spec.yaml", "sha256": "a" * 64, "name": "t", "base_dir": "/x"},
        "steps": [
            {"index": 1, "op": "generate", "line": 9, "status": "ok", "seconds": 1.0},
            {
                "index": 2,
                "op": "generate",
                "line": 11,
                "status": "ok",
                "seconds": 1.0,
                "scheduler": step_scheduler,
            },
        ],
    }
    if setup is not None:
        data["model_setup"] = setup
    return m.parse(data)


def karras(on: bool, kind: str = "DPMSolverMultistepScheduler") -> dict[str, Any]:
    sampler = "DPM++ 2M Karras" if on else "DPM++ 2M"
    return {
        "type": kind,
        "config": {"use_karras_sigmas": on, "solver_order": 2},
        "sampler": sampler,
    }


def test_a_manifest_written_before_model_setup_still_reads() -> None:
    old = manifest(None)
    assert old.model_setup is None and old.steps[0].scheduler is None
    new = manifest({"scheduler": karras(True), "components_left_out": ["text_encoder_3"]})
    assert new.model_setup is not None and new.model_setup.scheduler is not None
    assert new.model_setup.scheduler.config["use_karras_sigmas"] is True
    assert new.model_setup.components_left_out == ["text_encoder_3"]


def test_diff_names_a_scheduler_difference() -> None:
    a = manifest({"scheduler": karras(False)})
    b = manifest({"scheduler": karras(True)})
    assert audit.setup_changes(a, b) == ["model scheduler config use_karras_sigmas false -> true"]
    euler = {
        "type": "EulerDiscreteScheduler",
        "config": {"use_karras_sigmas": False},
        "sampler": "Euler",
    }
    c = manifest({"scheduler": euler, "components_left_out": ["safety_checker"]})
    assert audit.setup_changes(a, c) == [
        "model scheduler DPMSolverMultistepScheduler (DPM++ 2M) -> EulerDiscreteScheduler (Euler)",
        'model components_left_out [] -> ["safety_checker"]',
    ]
    lm_a = manifest({"attn_implementation": "sdpa"})
    lm_b = manifest({"attn_implementation": "eager"})
    assert audit.setup_changes(lm_a, lm_b) == ["model attn_implementation sdpa -> eager"]
    assert audit.setup_changes(a, a) == []
    # a run from before model_setup was recorded: every recorded fact is new
    assert audit.setup_changes(manifest(None), lm_b) == ["model attn_implementation none -> eager"]

    own = manifest({"scheduler": karras(False)}, step_scheduler=euler)
    assert "step 2 generate: scheduler none -> EulerDiscreteScheduler (Euler)" in (
        audit.step_changes(a, own)
    )
    assert audit.likely_causes(a, b) == ["model scheduler config use_karras_sigmas false -> true"]
