"""The shaping ops in the spec language: fuse/unfuse in pairs, nothing reshaping the adapters
in between, delete against what is loaded, each refusal one located line."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.spec.load import load
from runner.spec.types import Delete, Fuse, Unfuse

HEAD = (
    "version: 1\n"
    "model: {family: FAMILY, path: builtin:MODEL}\n"
    "adapters:\n"
    "  a: {path: builtin:MODEL-lora-a}\n"
    "  b: {path: builtin:MODEL-lora-B}\n"
    "steps:\n"
    "  - {op: load, adapters: [a, b]}\n"
)
MODELS = {"transformers": ("tiny-causal-lm", "b"), "diffusers": ("tiny-sd", "b")}


def write(tmp_path: Path, steps: str, family: str = "transformers") -> Path:
    model, b = MODELS[family]
    text = HEAD.replace("FAMILY", family).replace("MODEL", model).replace("lora-B", f"lora-{b}")
    spec = tmp_path / "spec.yaml"
    spec.write_text(text + steps)
    return spec


def errors(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(spec)
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_fuse_unfuse_and_delete_build_typed_steps(tmp_path: Path) -> None:
    spec = load(
        write(
            tmp_path,
            "  - {op: fuse, lora_scale: 0.5}\n"
            "  - {op: generate, prompt: x}\n"
            "  - {op: unfuse}\n"
            "  - {op: delete, adapters: b}\n"
            "  - {op: set_adapters, adapters: a}\n",
            "diffusers",
        )
    )
    assert spec.steps[1:4] == (Fuse(0.5, 8), spec.steps[2], Unfuse(10))
    assert spec.steps[4] == Delete(("b",), 11)


@pytest.mark.parametrize(
    ("between", "message"),
    [
        ("{op: set_adapters, adapters: a}", "set_adapters while the adapters are fused (steps[1])"),
        (
            "{op: compare, adapters: [a, b], prompt: x}",
            "compare while the adapters are fused (steps[1])",
        ),
        ("{op: disable}", "disable while the adapters are fused (steps[1])"),
        ("{op: delete, adapters: a}", "delete while the adapters are fused (steps[1])"),
        ("{op: fuse}", "fuse while the adapters are fused (steps[1])"),
        (
            "{op: score, adapters: [a, b], context: x, continuation: y}",
            "score while the adapters are fused (steps[1])",
        ),
        ("{op: merge, name: m, adapters: [a, b]}", "merge while the adapters are fused (steps[1])"),
        (
            "{op: train, adapter: a, steps: 1, text: x}",
            "train while the adapters are fused (steps[1])",
        ),
    ],
)
def test_reshaping_while_fused_is_refused(tmp_path: Path, between: str, message: str) -> None:
    spec = write(tmp_path, f"  - {{op: fuse}}\n  - {between}\n  - {{op: unfuse}}\n")
    assert errors(spec) == [f"9: {message}; unfuse first"]


def test_saving_while_fused_is_allowed(tmp_path: Path) -> None:
    load(write(tmp_path, "  - {op: fuse}\n  - {op: save, adapter: a}\n  - {op: unfuse}\n"))


def test_after_unfuse_the_adapters_can_be_set_again(tmp_path: Path) -> None:
    load(write(tmp_path, "  - {op: fuse}\n  - {op: unfuse}\n  - {op: set_adapters, adapters: b}\n"))


def test_unfuse_needs_a_fuse_and_fuse_needs_running_adapters(tmp_path: Path) -> None:
    assert errors(write(tmp_path, "  - {op: unfuse}\n")) == [
        "8: unfuse with nothing fused; fuse in an earlier step"
    ]
    assert errors(write(tmp_path, "  - {op: disable}\n  - {op: fuse}\n  - {op: unfuse}\n")) == [
        "9: fuse while the adapters are disabled; enable them first"
    ]


def test_lora_scale_of_fuse_is_refused_for_transformers(tmp_path: Path) -> None:
    (line,) = errors(write(tmp_path, "  - {op: fuse, lora_scale: 0.5}\n"))
    assert line.startswith("8: lora_scale is a diffusers argument of fuse")


def test_a_deleted_adapter_is_loaded_no_more(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "  - {op: delete, adapters: [a]}\n"
        "  - {op: set_adapters, adapters: {a: 0.5}}\n"
        "  - {op: compare, adapters: [b, a], prompt: x}\n"
        "  - {op: delete, adapters: a}\n",
    )
    refused = "adapter 'a' is not loaded at this step; load it in an earlier step"
    assert errors(spec) == [f"9: {refused}", f"10: {refused}", f"11: {refused}"]


def test_a_deleted_adapter_may_be_loaded_again(tmp_path: Path) -> None:
    load(write(tmp_path, "  - {op: delete, adapters: a}\n  - {op: load, adapters: a}\n"))


def test_quantization_options_and_fuse_on_a_quantized_base(tmp_path: Path) -> None:
    spec = tmp_path / "q.yaml"
    spec.write_text(
        "version: 1\n"
        "model:\n  family: transformers\n  path: builtin:tiny-causal-lm\n"
        "  quantization: {backend: bitsandbytes, bits: 8, quant_type: nf4, components: [unet]}\n"
        "adapters:\n  a: {path: builtin:tiny-causal-lm-lora-a}\n"
        "steps:\n  - {op: load, adapters: a}\n  - {op: fuse}\n  - {op: unfuse}\n"
    )
    assert errors(spec) == [
        "5: quant_type is a 4-bit option; bits is 8",
        "5: components name what a diffusers pipeline quantizes; a causal LM is quantized whole",
        "10: fuse on a quantized base is refused",
    ]


def test_the_quantization_is_part_of_the_model_key(tmp_path: Path) -> None:
    from runner.running.models import model_key

    plain = load(write(tmp_path, ""))
    spec = tmp_path / "q.yaml"
    spec.write_text(
        write(tmp_path, "")
        .read_text()
        .replace(
            "path: builtin:tiny-causal-lm}",
            "path: builtin:tiny-causal-lm, quantization: {backend: bitsandbytes, bits: 4}}",
        )
    )
    quantized = load(spec)
    assert quantized.model.quantization is not None
    assert model_key(plain, "cpu", "float32") != model_key(quantized, "cpu", "float32")
