"""Meaning checks: what the schema cannot say, checked before anything loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import builtin, sources
from runner.errors import Located, RunnerError
from runner.sources import is_local, local_path, on_disk
from runner.spec import references
from runner.spec.document import Document, Path_

_RELATIVE = " (relative paths resolve against the spec's folder)"


def _relative(path: str) -> bool:
    return not path.startswith(("/", "~"))


def _shaped(value: Any, kind: type) -> Any:
    """VALUE if it has the shape the schema wants, else an empty one: checks run on any input."""
    return value if isinstance(value, kind) else kind()


def meaning_problems(doc: Document, base_dir: Path) -> list[Located]:
    data = _shaped(doc.data, dict)
    model: dict[str, Any] = _shaped(data.get("model"), dict)
    adapters: dict[str, Any] = _shaped(data.get("adapters"), dict)
    steps: list[Any] = _shaped(data.get("steps"), list)
    problems = _model(doc, model, base_dir)
    types: dict[str, str | None] = {}
    for name, adapter in adapters.items():
        if isinstance(adapter, dict):
            problems += _adapter(doc, name, adapter, model.get("family"), base_dir)
            types[name] = _peft_type(adapter, base_dir)
    preloaded = _model_adapter(model, base_dir)
    if preloaded is not None:  # an adapter folder as model path arrives as 'default'
        types["default"] = preloaded
    problems += _steps(doc, steps, adapters, types, preloaded is not None)
    problems += references.size_problems(doc, data)
    return problems


def _model_adapter(model: dict[str, Any], base_dir: Path) -> str | None:
    """The PEFT type of the adapter a model path brings along, if it is an adapter folder."""
    path = model.get("path")
    local = on_disk(path, base_dir) if isinstance(path, str) else None
    if sources.adapter_folder(local) is not None:
        return _peft_type({"path": path}, base_dir) or "unknown"
    return None


def _model(doc: Document, model: dict[str, Any], base_dir: Path) -> list[Located]:
    path = model.get("path")
    if not isinstance(path, str):
        return []
    return _source(doc, ("model", "path"), path, base_dir, kind="model", family=model.get("family"))


def _source(
    doc: Document, where: Path_, path: str, base_dir: Path, *, kind: str, family: Any
) -> list[Located]:
    name = sources.builtin_name(path)
    if name is not None:
        known = {n: b for n, b in builtin.catalog().items() if b.kind == kind}
        if name not in known:
            fitting = sorted(n for n, b in known.items() if b.family == family) or sorted(known)
            return [
                doc.problem(
                    where, f"unknown builtin {kind} '{name}'; builtins: {', '.join(fitting)}"
                )
            ]
        if isinstance(family, str) and known[name].family != family:
            return [
                doc.problem(
                    where,
                    f"builtin '{name}' is a {known[name].family} {kind}, "
                    f"but model.family is {family}",
                )
            ]
        return []
    if is_local(path) and not local_path(path, base_dir).exists():
        return [
            doc.problem(where, f"local path '{path}' does not exist" + _RELATIVE * _relative(path))
        ]
    return []


def _adapter(
    doc: Document, name: str, adapter: dict[str, Any], family: Any, base_dir: Path
) -> list[Located]:
    here: Path_ = ("adapters", name)
    problems = []
    naming = sources.name_problem(name)
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
    weight = adapter.get("weight_name")
    if isinstance(weight, str) and (
        Path(weight).name != weight or weight in ("", ".", "..") or "\\" in weight
    ):
        problems.append(
            doc.problem(
                (*here, "weight_name"), f"'{weight}' must be a plain file name inside 'path'"
            )
        )
    path = adapter.get("path")
    if isinstance(path, str):
        before = len(problems)
        problems += _source(doc, (*here, "path"), path, base_dir, kind="adapter", family=family)
        if len(problems) == before and not adapter.get("allow_pickle"):
            problems += _pickle(doc, here, path, weight, base_dir)
    return problems


def _pickle(doc: Document, here: Path_, path: str, weight: Any, base_dir: Path) -> list[Located]:
    """Refuse a pickled checkpoint unless allow_pickle: loading one can run arbitrary code."""
    if isinstance(weight, str) and sources.is_pickle(weight):
        return [doc.problem((*here, "weight_name"), sources.pickle_refusal(f"'{weight}'"))]
    local = on_disk(path, base_dir)
    if local is None:
        return []
    if local.is_file() and sources.is_pickle(local.name):
        return [doc.problem((*here, "path"), sources.pickle_refusal(f"'{path}'"))]
    if local.is_dir() and weight is None:
        files = [p.name for p in local.iterdir()]
        if not any(f.endswith(".safetensors") for f in files) and any(
            map(sources.is_pickle, files)
        ):
            refusal = sources.pickle_refusal(f"the only checkpoint in '{path}'")
            return [doc.problem((*here, "path"), refusal)]
    return []


def _peft_type(adapter: dict[str, Any], base_dir: Path) -> str | None:
    """The adapter's PEFT type when it can be told without loading anything."""
    config = adapter.get("config")
    if isinstance(config, dict):
        return str(config.get("type", "lora")).lower()
    path = adapter.get("path")
    if not isinstance(path, str):
        return None
    name = sources.builtin_name(path)
    if name is not None:
        entry = builtin.catalog().get(name)
        return entry.peft_type if entry else None
    folder = sources.adapter_folder(on_disk(path, base_dir))
    if folder is None:
        return None
    try:
        return str(sources.read_adapter_config(folder).get("peft_type", "")).lower() or None
    except RunnerError:
        return None


def _names(value: Any) -> list[tuple[Path_, str]]:
    """The adapter names a step's `adapters` field mentions, each with its own sub-path."""
    if isinstance(value, str):
        return [((), value)]
    if isinstance(value, list):
        return [((i,), v) for i, v in enumerate(value) if isinstance(v, str)]
    if isinstance(value, dict):
        return [((k,), k) for k in value]
    return []


def _steps(
    doc: Document,
    steps: list[Any],
    declared: dict[str, Any],
    types: dict[str, str | None],
    has_default: bool,
) -> list[Located]:
    problems: list[Located] = []
    loaded: dict[str, int] = {}
    if has_default:
        declared = {**declared, "default": None}
        loaded["default"] = -1
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
                        f"duplicate step id '{step_id}' (first in steps[{ids[step_id]}])",
                    )
                )
            ids.setdefault(step_id, index)
        op = step.get("op")
        if op == "compare":
            problems += references.compare_problems(doc, here, step, declared, loaded, types)
        if op not in ("load", "set_adapters"):
            continue
        field = (*here, "adapters")
        names = _names(step.get("adapters"))
        for sub, name in names:
            where = (*field, *sub)
            key = isinstance(step.get("adapters"), dict)
            if name not in declared:
                problems.append(
                    doc.problem(where, references.not_declared(name, declared), key=key)
                )
            elif op == "load" and name in loaded:
                problems.append(
                    doc.problem(
                        where,
                        f"adapter '{name}' is already loaded"
                        + (
                            f" (steps[{loaded[name]}])"
                            if loaded[name] >= 0
                            else " (with the model)"
                        ),
                    )
                )
            elif op == "load":
                loaded[name] = index
            elif name not in loaded:
                problems.append(doc.problem(where, references.not_loaded(name), key=key))
        if op == "set_adapters":
            found = [(n, t) for _, n in names if (t := types.get(n))]
            if len({t for _, t in found}) > 1:
                problems.append(doc.problem(field, references.mixed_types(found)))
    return problems
