"""Meaning checks: what the schema cannot say, checked before anything loads.

Names, the order of steps, and what a step's arguments mean together are checked here;
what the disk holds, in runner.spec.disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.sources import names
from runner.spec import (
    datachecks,
    disk,
    making,
    references,
    scorechecks,
    shaping_checks,
    weight_checks,
)
from runner.spec.defaults import generate_defaults, with_defaults
from runner.spec.document import Document, Path_
from runner.spec.expect_checks import expect_problems
from runner.spec.metricchecks import metric_problems
from runner.spec.scheduler_checks import scheduler_problems
from runner.spec.values import is_int
from runner.spec.vocabulary import DEVICE_MESSAGE, DEVICE_PATTERN, GENERATING, MAX_SEED


def device_problem(device: str) -> str | None:
    """Why DEVICE cannot name where a run runs, or None: the spec's rule, for an override."""
    if re.fullmatch(DEVICE_PATTERN.strip("^$"), device):
        return None
    return f"device '{device}': {DEVICE_MESSAGE}"


def _shaped(value: Any, kind: type) -> Any:
    """VALUE if it has the shape the schema wants, else an empty one: checks run on any input."""
    return value if isinstance(value, kind) else kind()


def meaning_problems(doc: Document, base_dir: Path) -> list[Located]:
    data = _shaped(doc.data, dict)
    model: dict[str, Any] = _shaped(data.get("model"), dict)
    adapters: dict[str, Any] = _shaped(data.get("adapters"), dict)
    steps: list[Any] = _shaped(data.get("steps"), list)
    problems = disk.model_problems(doc, model, base_dir)
    types: dict[str, str | None] = {}
    for name, adapter in adapters.items():
        if isinstance(adapter, dict):
            problems += _adapter(doc, name, adapter, model.get("family"), base_dir)
            types[name] = disk.peft_type(adapter, base_dir)
    preloaded = disk.model_adapter_type(model, base_dir)
    if preloaded is not None:  # an adapter folder as model path arrives as 'default'
        types["default"] = preloaded
    problems += _steps(doc, steps, adapters, types, preloaded is not None, model.get("family"))
    problems += shaping_checks.fused_problems(
        doc, steps, model.get("family"), "quantization" in model, preloaded is not None
    )
    problems += _generating(doc, data, steps, model.get("family"))
    counted = datachecks.counted(data, base_dir)
    problems += references.size_problems(doc, counted)
    problems += weight_checks.weight_problems(doc, steps, model, base_dir)
    problems += shaping_checks.quantization_problems(doc, model)
    problems += datachecks.problems(doc, data, base_dir)
    problems += scorechecks.problems(doc, data, base_dir)
    problems += expect_problems(
        doc, counted, _shaped(counted.get("steps"), list), model.get("family")
    )
    problems += metric_problems(doc, steps, model.get("family"), base_dir)
    problems += scheduler_problems(doc, data)
    return problems


def _adapter(
    doc: Document, name: str, adapter: dict[str, Any], family: Any, base_dir: Path
) -> list[Located]:
    here: Path_ = ("adapters", name)
    problems = []
    naming = names.name_problem(name)
    if naming:
        problems.append(doc.problem(here, naming, key=True))
    has_path, has_config = "path" in adapter, "config" in adapter
    if has_path == has_config:
        problems.append(
            doc.problem(
                here,
                "an adapter needs exactly one of 'path' (load it) or 'config' (build it)",
                key=True,
            )
        )
    if has_config and family == "diffusers":
        problems.append(
            doc.problem(
                (*here, "config"),
                "adapters built from a config need model.family transformers; "
                "load a LoRA file with 'path' for diffusers",
                key=True,
            )
        )
    problems += disk.adapter_problems(doc, here, adapter, family, base_dir)
    return problems


def _generating(
    doc: Document, data: dict[str, Any], steps: list[Any], family: Any
) -> list[Located]:
    """What a generating step's arguments mean together, defaults.generate merged in."""
    defaults = generate_defaults(data)
    problems = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in GENERATING:
            continue
        here: Path_ = ("steps", index)
        args = with_defaults(defaults, step)
        prompts = args.get("prompt")
        count = len(prompts) if isinstance(prompts, list) else 1
        negative = args.get("negative_prompt")
        if isinstance(negative, list) and negative and len(negative) != count:
            inherited = "negative_prompt" not in step
            problems.append(
                doc.problem(
                    here if inherited else (*here, "negative_prompt"),
                    f"negative_prompt{' (from defaults.generate)' * inherited} has "
                    f"{len(negative)} entries for {count} prompt{'s' * (count != 1)}; "
                    "give one per prompt, or one string for all",
                )
            )
        seed, per_prompt = (
            args.get("seed", data.get("seed", 0)),
            args.get("num_images_per_prompt", 1),
        )
        if family == "diffusers" and is_int(seed) and is_int(per_prompt) and per_prompt > 0:
            last = seed + count * per_prompt - 1  # image k draws from seed + k
            if 0 <= seed <= MAX_SEED < last:
                problems.append(
                    doc.problem(
                        (*here, "seed") if "seed" in step else here,
                        f"the step's last image would draw from seed {seed} + "
                        f"{count * per_prompt - 1}, past {MAX_SEED}, the largest seed torch "
                        "takes; choose a smaller seed",
                    )
                )
    return problems


@dataclass
class _Adapters:
    """The adapter names as the steps so far leave them: DECLARED (a merge adds the name it
    makes), LOADED (name -> the index of the step that loaded it; -1: with the model) and
    their TYPES."""

    doc: Document
    declared: dict[str, Any]
    loaded: dict[str, int]
    types: dict[str, str | None]
    family: Any


def _mentioned(here: Path_, step: dict[str, Any]) -> list[tuple[Path_, str, bool]]:
    """(where, name, written as a key) for each adapter name of the step's `adapters`."""
    written = step.get("adapters")
    return [
        ((*here, "adapters", *sub), name, isinstance(written, dict))
        for sub, name in references.adapter_names(written)
    ]


def _load(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    """Each name is declared and not loaded yet; it is loaded from here on."""
    problems = []
    for where, name, key in _mentioned(here, step):
        if name not in ledger.declared:
            problems.append(
                ledger.doc.problem(where, references.not_declared(name, ledger.declared), key=key)
            )
        elif name in ledger.loaded:
            first = ledger.loaded[name]
            problems.append(
                ledger.doc.problem(
                    where,
                    f"adapter '{name}' is already loaded"
                    + (f" (step {first + 1})" if first >= 0 else " (with the model)"),
                )
            )
        else:
            ledger.loaded[name] = int(here[1])
    return problems


def _set_adapters(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    """Each name is declared and loaded; the adapters set together are of one type."""
    problems = []
    mentioned = _mentioned(here, step)
    for where, name, key in mentioned:
        problem = references.unusable(name, ledger.declared, ledger.loaded)
        if problem:
            problems.append(ledger.doc.problem(where, problem, key=key))
    found = [(n, t) for _, n, _ in mentioned if (t := ledger.types.get(n))]
    if len({t for _, t in found}) > 1:
        problems.append(ledger.doc.problem((*here, "adapters"), references.mixed_types(found)))
    return problems


def _rows(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return references.compare_problems(
        ledger.doc, here, step, ledger.declared, ledger.loaded, ledger.types
    )


def _merge(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return making.merge_problems(
        ledger.doc, here, step, ledger.declared, ledger.loaded, ledger.types
    )


def _train(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return making.train_problems(
        ledger.doc, here, step, ledger.declared, ledger.loaded, ledger.family
    )


def _save(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return making.save_problems(
        ledger.doc, here, step, ledger.declared, ledger.loaded, ledger.family
    )


def _delete(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return shaping_checks.delete_problems(ledger.doc, here, step, ledger.declared, ledger.loaded)


def _no_names(ledger: _Adapters, here: Path_, step: dict[str, Any]) -> list[Located]:
    return []


# What each op names and changes among the adapters, as spec.types.BUILDERS builds each op
# and the interpreter's OPS runs it.
ADAPTER_CHECKS: dict[str, Callable[[_Adapters, Path_, dict[str, Any]], list[Located]]] = {
    "load": _load,
    "set_adapters": _set_adapters,
    "generate": _no_names,
    "compare": _rows,
    "disable": _no_names,
    "enable": _no_names,
    "score": _rows,
    "merge": _merge,
    "train": _train,
    "save": _save,
    "fuse": _no_names,  # the fused state is checked over the whole spec (shaping_checks)
    "unfuse": _no_names,
    "delete": _delete,
}


def _steps(
    doc: Document,
    steps: list[Any],
    declared: dict[str, Any],
    types: dict[str, str | None],
    has_default: bool,
    family: Any = None,
) -> list[Located]:
    problems: list[Located] = []
    ledger = _Adapters(doc, dict(declared), {}, types, family)
    if has_default:
        ledger.declared["default"] = None
        ledger.loaded["default"] = -1
    ids: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here: Path_ = ("steps", index)
        step_id = step.get("id")
        if isinstance(step_id, str):
            if step_id in ids:
                problems.append(
                    doc.problem(
                        (*here, "id"),
                        f"duplicate step id '{step_id}' (first in step {ids[step_id] + 1})",
                    )
                )
            ids.setdefault(step_id, index)
        check = ADAPTER_CHECKS.get(str(step.get("op")))
        if check is not None:  # no such op: the schema says so
            problems += check(ledger, here, step)
    return problems
