"""Meaning checks of the shaping ops: `delete` against what is loaded, and what may run while
the adapters are fused (`fuse` ... `unfuse`), tracked through the steps in order."""

from __future__ import annotations

from typing import Any

from runner.errors import Located
from runner.spec import references
from runner.spec.document import Document, Path_

# What changes the adapters or which of them run: refused between fuse and unfuse, as the
# libraries would silently unmerge (disable) or ignore a new adapter (load) there.
REFUSED_WHILE_FUSED = (
    "load",
    "set_adapters",
    "compare",
    "score",
    "disable",
    "enable",
    "delete",
    "fuse",
    "merge",
    "train",
)


def delete_problems(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
) -> list[Located]:
    """Each name of a delete step declared and loaded by then; deleted, it is loaded no more."""
    written = step.get("adapters")
    listed = references.adapter_names(written) if not isinstance(written, dict) else []
    problems = []
    for sub, name in listed:
        problem = references.unusable(name, declared, loaded)
        if problem:
            problems.append(doc.problem((*here, "adapters", *sub), problem))
        else:
            del loaded[name]
    return problems


def fused_problems(
    doc: Document, steps: list[Any], family: Any, quantized: bool, has_default: bool
) -> list[Located]:
    """fuse and unfuse in pairs, with adapters loaded and running, nothing reshaping them
    in between; a quantized base is never fused."""
    problems: list[Located] = []
    fused_at: int | None = None
    disabled, loaded = False, has_default
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here: Path_ = ("steps", index)
        op = step.get("op")
        if fused_at is not None and op in REFUSED_WHILE_FUSED:
            problems.append(
                doc.problem(
                    here,
                    f"{op} while the adapters are fused (steps[{fused_at}]); unfuse first",
                )
            )
        elif op == "fuse":
            why = _unfusable(step, family, quantized, disabled, loaded)
            if why:
                field, message = why
                problems.append(doc.problem((*here, field) if field else here, message))
            fused_at = index
        elif op == "unfuse" and fused_at is None:
            problems.append(doc.problem(here, "unfuse with nothing fused; fuse in an earlier step"))
        if op == "unfuse":
            fused_at = None
        disabled = {"disable": True, "enable": False}.get(str(op), disabled)
        loaded = loaded or op == "load"
    return problems


def quantization_problems(doc: Document, model: dict[str, Any]) -> list[Located]:
    """4-bit options only at 4 bits; components to quantize only for a diffusers pipeline."""
    q = model.get("quantization")
    if not isinstance(q, dict):
        return []
    here: Path_ = ("model", "quantization")
    problems = [
        doc.problem((*here, key), f"{key} is a 4-bit option; bits is {q.get('bits')}", key=True)
        for key in ("quant_type", "compute_dtype")
        if key in q and q.get("bits") != 4
    ]
    if "components" in q and model.get("family") != "diffusers":
        problems.append(
            doc.problem(
                (*here, "components"),
                "components name what a diffusers pipeline quantizes; a causal LM is "
                "quantized whole",
                key=True,
            )
        )
    return problems


def _unfusable(
    step: dict[str, Any], family: Any, quantized: bool, disabled: bool, loaded: bool
) -> tuple[str, str] | None:
    """(field or "", why) this fuse step cannot run, or None."""
    if quantized:
        return "", "fuse on a quantized base is refused"
    if not loaded:
        return "", "fuse with no adapter loaded; load one in an earlier step"
    if disabled:
        return "", "fuse while the adapters are disabled; enable them first"
    if family == "transformers" and step.get("lora_scale", 1.0) != 1.0:
        return "lora_scale", (
            "lora_scale is a diffusers argument of fuse; for transformers set the weights "
            "with set_adapters"
        )
    return None
