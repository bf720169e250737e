"""Where a model or adapter written in a spec lives, and the rules for using it.

One home for each rule that validation and the backends share: what a local path is,
the `builtin:` prefix, the pickle refusal, the adapter names peft cannot hold, and an
adapter folder given as the model path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from runner import builtin
from runner.errors import RunnerError
from runner.spec.rows import BASE
from runner.spec.types import Adapter, Model

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
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


def builtin_name(path: str) -> str | None:
    """NAME of a `builtin:NAME` path, else None."""
    return path[len(builtin.PREFIX) :] if path.startswith(builtin.PREFIX) else None


def is_pickle(file_name: str) -> bool:
    """A checkpoint format that can run code when read."""
    return file_name.lower().endswith(PICKLE_SUFFIXES)


def pickle_refusal(what: str) -> str:
    """The one wording of the pickle rule, for validation and backends alike."""
    return (
        f"{what} is a pickled checkpoint, which can run code when loaded; "
        "convert it to safetensors, or set allow_pickle: true to trust it"
    )


def name_problem(name: str) -> str | None:
    """Why NAME cannot name an adapter, or None."""
    if name == BASE:
        return f"adapter name '{BASE}' is reserved: in a compare step it means no adapter"
    if name in RESERVED or name.startswith("_"):
        return f"adapter name '{name}' is reserved by torch modules; choose another"
    if not ADAPTER_NAME.fullmatch(name):
        return f"adapter name '{name}' may hold only letters, digits, '_' and '-'"
    return None


ADAPTER_CONFIG = "adapter_config.json"


def adapter_folder(local: Path | str | None) -> Path | None:
    """LOCAL when it is an adapter folder (it holds adapter_config.json), else None."""
    if local is None:
        return None
    folder = Path(local)
    return folder if (folder / ADAPTER_CONFIG).is_file() else None


def read_adapter_config(folder: Path) -> dict[str, object]:
    """adapter_config.json of FOLDER as a mapping; a broken one is an error naming the file."""
    file = folder / ADAPTER_CONFIG
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{file}: not a readable PEFT config ({exc})") from None
    if not isinstance(config, dict):
        raise RunnerError(f"{file}: not a readable PEFT config (not a JSON object)")
    return config


def base_of(folder: Path) -> tuple[str, str | None]:
    """(base model source, revision) an adapter folder names in its adapter_config.json.

    A relative base is taken from the folder, not the working directory; a `builtin:`
    base resolves to its folder.
    """
    config = read_adapter_config(folder)
    base = config.get("base_model_name_or_path") or ""
    name = builtin_name(base) if isinstance(base, str) else None
    if name is not None and name in builtin.catalog():
        return str(builtin.resolve(name)), None
    if not isinstance(base, str) or not base or name is not None:
        raise RunnerError(f"{folder / ADAPTER_CONFIG} names no base model we can load: {base!r}")
    if not os.path.isabs(base) and (base.startswith(("./", "../")) or (folder / base).exists()):
        return str((folder / base).resolve()), None
    revision = config.get("revision")  # peft records the base model's revision here
    return base, revision if isinstance(revision, str) else None


def model_source(model: Model, base_dir: Path) -> str:
    """A local folder for builtin and local paths; a hub id stays as written."""
    name = builtin_name(model.path)
    if name is not None:
        return str(builtin.resolve(name))
    local = on_disk(model.path, base_dir)
    if local is not None:
        return str(local)
    return model.path


def adapter_local(adapter: Adapter, base_dir: Path) -> Path | None:
    """The local file or folder holding ADAPTER's weights, fetched into the hub cache if need be.

    None for an adapter built from a config.
    """
    if adapter.path is None:
        return None
    name = builtin_name(adapter.path)
    if name is not None:
        return builtin.resolve(name)
    local = on_disk(adapter.path, base_dir)
    if local is not None:
        return local
    return _from_hub(adapter)


def _from_hub(adapter: Adapter) -> Path:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    assert adapter.path is not None
    try:
        if adapter.weight_name:
            file = huggingface_hub.hf_hub_download(
                adapter.path, adapter.weight_name, revision=adapter.revision
            )
            with contextlib.suppress(EntryNotFoundError):  # PEFT folders need it; LoRA files don't
                huggingface_hub.hf_hub_download(
                    adapter.path, "adapter_config.json", revision=adapter.revision
                )
            return Path(file).parent
        patterns = ["*.json", "*.safetensors"]
        if adapter.allow_pickle:
            patterns += [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
        folder = huggingface_hub.snapshot_download(
            adapter.path, revision=adapter.revision, allow_patterns=patterns
        )
        return Path(folder)
    except LocalEntryNotFoundError:
        raise RunnerError(
            f"'{adapter.path}' is not in the local hub cache and the hub cannot be reached"
            " (HF_HUB_OFFLINE or no network)"
        ) from None
    except HfHubHTTPError as exc:
        raise RunnerError(f"the hub refused '{adapter.path}': {exc}") from None
