"""Meaning checks of the ops that make and write adapters (merge, save, train): what they name is
loaded by then, a merge's name is new, each option belongs to its method, each format to
its family. A merged adapter counts as loaded (a LoRA) for every later step."""

from __future__ import annotations

from typing import Any

from runner.errors import Located
from runner.sources import names
from runner.spec import references
from runner.spec.document import Document, Path_
from runner.spec.vocabulary import DENSITY_METHODS, SAVE_FORMATS, SIGN_METHODS, SVD_METHODS


def merge_problems(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
    types: dict[str, str | None],
) -> list[Located]:
    """A merge step at HERE; it adds its name to DECLARED, LOADED and TYPES."""
    problems = _method(doc, here, step)
    written = step.get("adapters")
    mentioned = references.adapter_names(written) if not isinstance(written, str) else []
    for sub, used in mentioned:
        where, key = (*here, "adapters", *sub), isinstance(written, dict)
        problem = references.unusable(used, declared, loaded)
        if problem:
            problems.append(doc.problem(where, problem, key=key))
    found = [(n, t) for _, n in mentioned if (t := types.get(n))]
    if len({t for _, t in found}) > 1:
        problems.append(doc.problem((*here, "adapters"), references.mixed_types(found)))
    elif any(t != "lora" for _, t in found):
        kinds = ", ".join(f"{n}: {t}" for n, t in found)
        problems.append(doc.problem((*here, "adapters"), f"only LoRA adapters merge ({kinds})"))
    name = step.get("name")
    if isinstance(name, str):
        problem = names.name_problem(name)
        if name in declared or name in loaded:
            problem = (
                f"adapter '{name}' exists already (declared under adapters or made by an "
                "earlier step); a merge makes a new name"
            )
        if problem:
            problems.append(doc.problem((*here, "name"), problem))
        index = here[1] if isinstance(here[1], int) else -1
        declared[name], loaded[name], types[name] = None, index, "lora"
    return problems


def _adapter(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
) -> list[Located]:
    """The step's one `adapter` (train, save), declared and loaded by then."""
    name = step.get("adapter")
    problem = references.unusable(name, declared, loaded) if isinstance(name, str) else None
    return [doc.problem((*here, "adapter"), problem)] if problem else []


def _method(doc: Document, here: Path_, step: dict[str, Any]) -> list[Located]:
    """Each option of a merge where its method takes it; density where the method needs it."""
    method = step.get("method", "linear")
    problems = []
    if method in DENSITY_METHODS and "density" not in step:
        problems.append(
            doc.problem(here, f"method {method} prunes: give density (the fraction kept, 0-1]")
        )
    for option, methods in (
        ("density", DENSITY_METHODS),
        ("majority_sign_method", SIGN_METHODS),
        ("svd_rank", SVD_METHODS),
    ):
        if option in step and method not in methods:
            problems.append(
                doc.problem(
                    (*here, option),
                    f"method {method} takes no {option} (only {', '.join(methods)})",
                    key=True,
                )
            )
    return problems


def save_problems(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
    family: Any,
) -> list[Located]:
    problems = _adapter(doc, here, step, declared, loaded)
    chosen = step.get("format")
    formats = SAVE_FORMATS.get(family) if isinstance(family, str) else None
    if isinstance(chosen, str) and formats and chosen not in formats:
        problems.append(
            doc.problem(
                (*here, "format"),
                f"a {family} adapter is written as {' or '.join(formats)}, not {chosen}",
            )
        )
    return problems


def train_problems(
    doc: Document,
    here: Path_,
    step: dict[str, Any],
    declared: dict[str, Any],
    loaded: dict[str, int],
    family: Any,
) -> list[Located]:
    problems = []
    if family == "diffusers":
        problems.append(
            doc.problem(
                (*here, "op"),
                "op: train needs a causal LM: model.family transformers, not diffusers",
            )
        )
    problems += _adapter(doc, here, step, declared, loaded)
    given = [k for k in ("text", "prompt", "completion") if k in step]
    if given not in (["text"], ["prompt", "completion"]):
        problems.append(
            doc.problem(
                here,
                "op: train takes `text`, or `prompt` and `completion` (the loss on the "
                f"completion alone); this step has {', '.join(given) or 'none of them'}",
            )
        )
    prompts, completions = step.get("prompt"), step.get("completion")
    if isinstance(prompts, list) and isinstance(completions, list):
        if len(prompts) != len(completions):
            problems.append(
                doc.problem(
                    (*here, "completion"),
                    f"{len(completions)} completions for {len(prompts)} prompts; give one each",
                )
            )
    return problems
