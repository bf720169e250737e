"""Meaning checks that ask the disk: is each model and adapter where, and what, the spec says.

The rules are runner.sources', which the backends apply again at run time; here they run
before anything loads, and what they say is reported at the spec's line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.builtin.known import catalog
from runner.errors import Located, SourceError
from runner.sources import folders, names
from runner.spec.document import Document, Path_
from runner.spec.vocabulary import FAMILIES

_RELATIVE = " (relative paths resolve against the spec's folder)"


def model_problems(doc: Document, model: dict[str, Any], base_dir: Path) -> list[Located]:
    """The model path: a builtin of its family, an existing folder, or a hub id."""
    path, where = model.get("path"), ("model", "path")
    if not isinstance(path, str):
        return []
    problems = _source(doc, where, path, base_dir, kind="model", family=model.get("family"))
    local = folders.on_disk(path, base_dir)
    problems += _components(doc, model, local)
    if not problems and local is not None and (local / folders.ADAPTER_CONFIG).is_file():
        try:  # an adapter folder as model: the base it names must be loadable too
            folders.adapter_base(local)
        except SourceError as exc:
            problems.append(doc.problem(where, _said(exc, path, local)))
    return problems


def _components(doc: Document, model: dict[str, Any], local: Path | None) -> list[Located]:
    """Components left out must be components of the pipeline, where its folder tells."""
    left_out = model.get("components")
    index = folders.pipeline_index(local)
    if not isinstance(left_out, dict) or index is None:
        return []
    return [
        doc.problem(("model", "components", name), problem, key=True)
        for name in left_out
        if (problem := index.unknown(str(name)))
    ]


def adapter_problems(
    doc: Document, here: Path_, adapter: dict[str, Any], family: Any, base_dir: Path
) -> list[Located]:
    """An adapter's path, subfolder and weight_name: there, readable, and no pickle unless
    allowed."""
    path, weight = adapter.get("path"), adapter.get("weight_name")
    subfolder = adapter.get("subfolder")
    if isinstance(weight, str):
        problem = names.weight_name_problem(weight)
        if problem:
            return [doc.problem((*here, "weight_name"), problem)]
    if isinstance(subfolder, str):
        problem = names.subfolder_problem(subfolder)
        if problem:
            return [doc.problem((*here, "subfolder"), problem)]
    if not isinstance(path, str):
        return []
    problems = _source(doc, (*here, "path"), path, base_dir, kind="adapter", family=family)
    if problems:
        return problems
    weight = weight if isinstance(weight, str) else None
    local = folders.on_disk(path, base_dir)
    if local is not None and isinstance(subfolder, str) and local.is_dir():
        try:
            local = folders.in_subfolder(local, subfolder)
        except SourceError as exc:
            return [doc.problem((*here, "subfolder"), _said(exc, path, local))]
    if local is not None and weight is not None and local.is_dir():
        try:
            folders.named_weight(local, weight)
        except SourceError as exc:
            return [doc.problem((*here, "weight_name"), _said(exc, path, local))]
    if local is not None:
        try:  # what the family's backend will look for in the folder
            if family == "transformers":
                folder, _ = folders.peft_files(local, weight)
                folders.adapter_config(folder)
            elif family == "diffusers":
                folders.lora_file(local, weight)
        except SourceError as exc:
            return [doc.problem((*here, "path"), _said(exc, path, local))]
    if adapter.get("allow_pickle") is True:
        return []
    return _pickle(doc, here, path, weight, local)


def _pickle(
    doc: Document, here: Path_, path: str, weight: str | None, local: Path | None
) -> list[Located]:
    """Refuse a pickled checkpoint unless allow_pickle: loading one can run arbitrary code."""
    if weight is not None and names.is_pickle(weight):
        return [doc.problem((*here, "weight_name"), names.pickle_refusal(weight))]
    if local is None:
        return []
    if local.is_file() and names.is_pickle(local.name):
        return [doc.problem((*here, "path"), names.pickle_refusal(path))]
    if local.is_dir() and weight is None:
        files = [p.name for p in local.iterdir()]
        if not any(map(names.is_safetensors, files)) and any(map(names.is_pickle, files)):
            return [doc.problem((*here, "path"), names.pickle_refusal(path, folder=True))]
    return []


def clip_problems(doc: Document, where: Path_, path: str, base_dir: Path) -> list[Located]:
    """A compare's CLIP model (`clip.path`): a builtin CLIP, a local path that exists, or a
    hub id."""
    return _source(doc, where, path, base_dir, kind="clip", family="diffusers")


def _source(
    doc: Document, where: Path_, path: str, base_dir: Path, *, kind: str, family: Any
) -> list[Located]:
    name = names.builtin_name(path)
    if name is not None:
        known = {n: b for n, b in catalog().items() if b.kind == kind}
        if name not in known:
            fitting = sorted(n for n, b in known.items() if b.family == family) or sorted(known)
            message = f"unknown builtin {kind} '{name}'; builtins: {', '.join(fitting)}"
            return [doc.problem(where, message)]
        if family in FAMILIES and known[name].family != family:  # a typo is reported once
            message = (
                f"builtin '{name}' is a {known[name].family} {kind}, but model.family is {family}"
            )
            return [doc.problem(where, message)]
        return []
    local = folders.on_disk(path, base_dir)
    if local is not None and not local.exists():
        relative = _RELATIVE * (not path.startswith(("/", "~")))
        return [doc.problem(where, f"local path '{path}' does not exist{relative}")]
    if local is None:
        problem = names.hub_id_problem(path)
        if problem:
            message = (
                f"'{path}' is neither a local path (nothing of that name beside the spec) "
                f"nor a hub id: {problem}"
            )
            return [doc.problem(where, message)]
    return []


def peft_type(adapter: dict[str, Any], base_dir: Path) -> str | None:
    """The adapter's PEFT type when it can be told without loading anything."""
    config = adapter.get("config")
    if isinstance(config, dict):
        return str(config.get("type", "lora")).lower()
    path = adapter.get("path")
    if not isinstance(path, str):
        return None
    name = names.builtin_name(path)
    if name is not None:
        entry = catalog().get(name)
        return entry.peft_type if entry else None
    local = folders.on_disk(path, base_dir)
    folder = local.parent if local is not None and local.is_file() else local
    if folder is not None and (folder / folders.ADAPTER_CONFIG).is_file():
        try:
            return str(folders.adapter_config(folder)["peft_type"]).lower()
        except SourceError:
            return None  # reported by adapter_problems
    return None


def model_adapter_type(model: dict[str, Any], base_dir: Path) -> str | None:
    """The PEFT type of the adapter a model path brings along, if it is an adapter folder."""
    path = model.get("path")
    local = folders.on_disk(path, base_dir) if isinstance(path, str) else None
    if local is not None and (local / folders.ADAPTER_CONFIG).is_file():
        return peft_type({"path": path}, base_dir) or "unknown"
    return None


def _said(exc: SourceError, written: str, local: Path) -> str:
    """EXC's message, naming its file as the spec wrote the path, not as this machine has it."""
    if exc.where is None:
        return exc.reason
    try:
        inside = exc.where.relative_to(local).as_posix()
    except ValueError:
        return str(exc)
    shown = written if inside == "." else f"{written.rstrip('/')}/{inside}"
    return f"'{shown}' {exc.reason}"
