"""The rules over the names a spec writes, before anything is read from disk or the hub.

One rule, one home: validation (runner.spec.checks) asks these rules before anything loads
and reports what they say at the spec's line; the backends ask the same rules at run time.
Pure functions over strings: no disk, no hub, no deep-learning library.
"""

from __future__ import annotations

import re
from pathlib import Path

from runner.builtin.entry import PREFIX
from runner.spec.rows import BASE

SAFETENSORS = ".safetensors"
# Pickled checkpoints, by their real extensions: a file with none of them is not one.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# huggingface_hub's validate_repo_id, which every hub call applies (a test holds them equal).
_HUB_NAME = re.compile(r"(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ADAPTER_NAME = re.compile(r"[A-Za-z0-9_-]+")  # used with fullmatch: `$` would pass "a\n"
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


def builtin_name(path: str) -> str | None:
    """NAME of a `builtin:NAME` path, else None."""
    return path[len(PREFIX) :] if path.startswith(PREFIX) else None


def name_problem(name: str) -> str | None:
    """Why NAME cannot name an adapter, or None; validation and backends ask the same."""
    if name == BASE:
        return f"adapter name '{BASE}' is reserved: in a compare step it means no adapter"
    if name in RESERVED or name.startswith("_"):
        return f"adapter name '{name}' is reserved by torch modules; choose another"
    if not ADAPTER_NAME.fullmatch(name):
        return f"adapter name '{name}' may hold only letters, digits, '_' and '-'"
    return None


def is_local(path: str) -> bool:
    """A path written to mean this machine's disk, never a hub id."""
    return path.startswith(("./", "../", "/", "~")) or path in (".", "..")


def hub_id_problem(repo_id: str) -> str | None:
    """Why REPO_ID cannot name a hub repository, by huggingface_hub's own rules; else None."""
    if repo_id.count("/") > 1:
        return "a hub id is 'name' or 'owner/name'"
    if not _HUB_NAME.fullmatch(repo_id):
        return (
            "a hub id holds only ASCII letters, digits, '-', '_' and '.', does not start or "
            "end with '-' or '.', and each part is at most 96 characters"
        )
    if "--" in repo_id or ".." in repo_id:
        return "a hub id cannot hold '--' or '..'"
    if repo_id.endswith(".git"):
        return "a hub id cannot end in '.git'"
    return None


def weight_name_problem(weight_name: str) -> str | None:
    """Why WEIGHT_NAME is not a plain file name (one that stays inside its folder); else None."""
    if (
        Path(weight_name).name != weight_name
        or weight_name in ("", ".", "..")
        or "\\" in weight_name
        or _CONTROL.search(weight_name)
    ):
        return f"'{weight_name}' must be a plain file name inside 'path'"
    return None


def subfolder_problem(subfolder: str) -> str | None:
    """Why SUBFOLDER is not a relative folder path that stays inside its repo or folder."""
    parts = subfolder.split("/")
    if (
        not subfolder
        or subfolder.startswith("/")
        or "\\" in subfolder
        or _CONTROL.search(subfolder)
        or any(part in ("", ".", "..") for part in parts)
    ):
        return f"'{subfolder}' must be a relative folder inside 'path' ('/' between parts, no '..')"
    return None


def is_pickle(file_name: str) -> bool:
    """A pickled checkpoint: loading one can run arbitrary code. The one pickle decision:
    by the file's extension, never as "anything that is not safetensors"."""
    return file_name.endswith(PICKLE_SUFFIXES)


def is_safetensors(file_name: str) -> bool:
    """A safetensors file, which holds tensors only."""
    return file_name.endswith(SAFETENSORS)


def pickle_refusal(name: str, *, folder: bool = False) -> str:
    """Why the pickled checkpoint NAME (or the FOLDER holding only one) is not loaded: the one
    wording, wherever a pickle is refused."""
    what = "holds only a pickled checkpoint" if folder else "is a pickled checkpoint"
    return f"'{name}' {what}, which can run code when loaded; set allow_pickle: true to load it"
