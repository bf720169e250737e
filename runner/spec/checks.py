"""Meaning checks: what the schema cannot say, checked before anything loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from runner import builtin
from runner.errors import Located
from runner.spec.document import Document, Path_
from runner.spec.grammar import GENERATING, MAX_SEED

ADAPTER_NAME = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch: `$` would pass "a\n"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# peft keeps adapters in torch ModuleDicts, which refuse keys that name their own attributes
# (torch.nn.ModuleDict's public names, torch 2.13); such a name crashes deep inside a load.
# fmt: off
RESERVED = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "clear", "compile", "cpu", "cuda", "double", "dump_patches", "eval",
    "extra_repr", "float", "forward", "get_buffer", "get_extra_state", "get_parameter",
    "get_submodule", "half", "ipu", "items", "keys", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "pop", "register_backward_hook", "register_buffer", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty",
    "train", "training", "type", "update", "values", "xpu", "zero_grad",
})
# fmt: on


def is_local(path: str) -> bool:
    """A path written to mean this machine's disk, never a hub id."""
    return path.startswith(("./", "../", "/", "~")) or path in (".", "..")


def local_path(path: str, base_dir: Path) -> Path:
    """Where a local-looking PATH points: relative paths resolve against the spec's folder."""
    return (base_dir / Path(path).expanduser()).resolve()


def on_disk(path: str, base_dir: Path) -> Path | None:
    """Where PATH lies on this machine, or None for a hub id or builtin name.

    A local-looking path always means the disk; any other path does when it exists beside
    the spec, as `from_pretrained` reads an existing folder before asking the hub.
    """
    if is_local(path):
        return local_path(path, base_dir)
    if path.startswith(builtin.PREFIX) or not (base_dir / path).exists():
        return None
    return (base_dir / path).resolve()


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
    problems += _generating(doc, data, steps, model.get("family"))
    return problems


def _model_adapter(model: dict[str, Any], base_dir: Path) -> str | None:
    """The PEFT type of the adapter a model path brings along, if it is an adapter folder."""
    path = model.get("path")
    local = on_disk(path, base_dir) if isinstance(path, str) else None
    if local is not None and (local / "adapter_config.json").is_file():
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
    if path.startswith(builtin.PREFIX):
        name = path[len(builtin.PREFIX) :]
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
    if name in RESERVED or name.startswith("_"):
        problems.append(
            doc.problem(
                here,
                f"adapter name '{name}' is reserved by torch modules; choose another",
                key=True,
            )
        )
    elif not ADAPTER_NAME.fullmatch(name):
        problems.append(
            doc.problem(
                here, f"adapter name '{name}' may hold only letters, digits, '_' and '-'", key=True
            )
        )
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
    refusal = (
        "is a pickled checkpoint, which can run code when loaded; set allow_pickle: true to load it"
    )
    if isinstance(weight, str) and weight.endswith(PICKLE_SUFFIXES):
        return [doc.problem((*here, "weight_name"), f"'{weight}' {refusal}")]
    local = on_disk(path, base_dir)
    if local is None:
        return []
    if local.is_file() and local.suffix in PICKLE_SUFFIXES:
        return [doc.problem((*here, "path"), f"'{path}' {refusal}")]
    if local.is_dir() and weight is None:
        files = [p.name for p in local.iterdir()]
        if not any(f.endswith(".safetensors") for f in files) and any(
            f.endswith(PICKLE_SUFFIXES) for f in files
        ):
            return [
                doc.problem(
                    (*here, "path"),
                    f"'{path}' holds only a pickled checkpoint, which can run "
                    "code when loaded; set allow_pickle: true to load it",
                )
            ]
    return []


def _peft_type(adapter: dict[str, Any], base_dir: Path) -> str | None:
    """The adapter's PEFT type when it can be told without loading anything."""
    config = adapter.get("config")
    if isinstance(config, dict):
        return str(config.get("type", "lora")).lower()
    path = adapter.get("path")
    if not isinstance(path, str):
        return None
    if path.startswith(builtin.PREFIX):
        entry = builtin.catalog().get(path[len(builtin.PREFIX) :])
        return entry.peft_type if entry else None
    local = on_disk(path, base_dir)
    config_file = local / "adapter_config.json" if local else None
    if config_file and config_file.is_file():
        try:
            return str(json.loads(config_file.read_text())["peft_type"]).lower()
        except (ValueError, KeyError, TypeError):
            return None
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _generating(
    doc: Document, data: dict[str, Any], steps: list[Any], family: Any
) -> list[Located]:
    """What a generating step's arguments mean together, defaults.generate merged in."""
    defaults: dict[str, Any] = _shaped(_shaped(data.get("defaults"), dict).get("generate"), dict)
    problems = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in GENERATING:
            continue
        here: Path_ = ("steps", index)
        args = {**defaults, **step}
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
        if family == "diffusers" and _is_int(seed) and _is_int(per_prompt) and per_prompt > 0:
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
        if op not in ("load", "set_adapters"):
            continue
        field = (*here, "adapters")
        names = _names(step.get("adapters"))
        for sub, name in names:
            where = (*field, *sub)
            key = isinstance(step.get("adapters"), dict)
            if name not in declared:
                listing = ", ".join(sorted(declared)) or "none"
                problems.append(
                    doc.problem(
                        where,
                        f"adapter '{name}' is not declared under adapters (declared: {listing})",
                        key=key,
                    )
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
                problems.append(
                    doc.problem(
                        where,
                        f"adapter '{name}' is not loaded at this step; load it in an earlier step",
                        key=key,
                    )
                )
        if op == "set_adapters":
            kinds = {types.get(n) for _, n in names if types.get(n)}
            if len(kinds) > 1:
                found = ", ".join(f"{n}: {types[n]}" for _, n in names if types.get(n))
                problems.append(
                    doc.problem(
                        field,
                        f"adapters of different PEFT types cannot be active together ({found})",
                    )
                )
    return problems
