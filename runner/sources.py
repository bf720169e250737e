"""Where a model or adapter written in a spec lives, and the rules about it.

One rule, one home: validation (runner.spec.checks) asks these rules before anything loads
and reports what they say at the spec's line; the backends ask the same rules at run time,
where a file may have changed since. Nothing here imports a deep-learning library.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import builtin
from runner.errors import SourceError
from runner.record.trust import inside
from runner.spec.rows import BASE
from runner.spec.types import Adapter, Model

ADAPTER_CONFIG = "adapter_config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What transformers' load_adapter reads from a PEFT folder: safetensors, else the pickle.
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# diffusers' own name for the one to load when a folder holds several LoRA files.
STANDARD_LORA = "pytorch_lora_weights.safetensors"
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
    return path[len(builtin.PREFIX) :] if path.startswith(builtin.PREFIX) else None


def name_problem(name: str) -> str | None:
    """Why NAME cannot name an adapter, or None; validation and backends ask the same."""
    if name == BASE:
        return f"adapter name '{BASE}' is reserved: in a compare step it means no adapter"
    if name in RESERVED or name.startswith("_"):
        return f"adapter name '{name}' is reserved by torch modules; choose another"
    if not ADAPTER_NAME.fullmatch(name):
        return f"adapter name '{name}' may hold only letters, digits, '_' and '-'"
    return None


def adapter_folder(local: Path | str | None) -> Path | None:
    """LOCAL when it is an adapter folder (it holds adapter_config.json), else None."""
    if local is None:
        return None
    folder = Path(local)
    return folder if (folder / ADAPTER_CONFIG).is_file() else None


def is_local(path: str) -> bool:
    """A path written to mean this machine's disk, never a hub id."""
    return path.startswith(("./", "../", "/", "~")) or path in (".", "..")


def local_path(path: str, base_dir: Path) -> Path:
    """Where a local-looking PATH points: relative paths resolve against BASE_DIR."""
    return (base_dir / Path(path).expanduser()).resolve()


def on_disk(path: str, base_dir: Path) -> Path | None:
    """Where PATH lies on this machine, or None for a hub id or builtin name.

    A local-looking path always means the disk; any other path does when it exists in
    BASE_DIR, as `from_pretrained` reads an existing folder before asking the hub.
    """
    if is_local(path):
        return local_path(path, base_dir)
    if path.startswith(builtin.PREFIX) or not (base_dir / path).exists():
        return None
    return (base_dir / path).resolve()


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


def in_subfolder(local: Path, subfolder: str | None) -> Path:
    """LOCAL's SUBFOLDER (LOCAL itself when None); SourceError when it is no folder there."""
    if subfolder is None:
        return local
    problem = subfolder_problem(subfolder)
    if problem:
        raise SourceError(None, problem)
    inner = local / subfolder
    if not inner.is_dir():
        raise SourceError(local, f"holds no folder '{subfolder}' (subfolder)")
    return inner


def named_weight(folder: Path, weight_name: str) -> Path:
    """The file WEIGHT_NAME in the local adapter FOLDER; SourceError when it is not there."""
    problem = weight_name_problem(weight_name)
    if problem:
        raise SourceError(None, problem)
    file = folder / weight_name
    if file.is_file() and not inside(folder, file):
        raise SourceError(file, "is a symlink that leads out of its folder; it is not loaded")
    if not file.is_file():
        present = sorted(p.name for p in _files(folder) if _is_weight(p))
        held = f" (it holds {', '.join(present)})" if present else ""
        raise SourceError(folder, f"holds no file '{weight_name}'{held}")
    return file


def _files(folder: Path, pattern: str = "*") -> list[Path]:
    """The regular files of FOLDER matching PATTERN whose links stay inside it (or inside its
    hub cache's blobs/), sorted: the only ones a weight file is chosen from."""
    return sorted(p for p in folder.glob(pattern) if p.is_file() and inside(folder, p))


def _is_weight(path: Path) -> bool:
    return path.suffix == ".safetensors" or is_pickle(path.name)


def is_pickle(file_name: str) -> bool:
    """A pickled checkpoint: loading one can run arbitrary code."""
    return file_name.endswith(PICKLE_SUFFIXES)


def pickle_refusal(name: str, *, folder: bool = False) -> str:
    """Why the pickled checkpoint NAME (or the FOLDER holding only one) is not loaded: the one
    wording, wherever a pickle is refused."""
    what = "holds only a pickled checkpoint" if folder else "is a pickled checkpoint"
    return f"'{name}' {what}, which can run code when loaded; set allow_pickle: true to load it"


def peft_files(local: Path, weight_name: str | None) -> tuple[Path, Path]:
    """(the folder with adapter_config.json, the weight file) of a PEFT adapter at LOCAL,
    a folder or a file in one, as transformers finds them; SourceError when one is missing."""
    folder = local.parent if local.is_file() else local
    if not (folder / ADAPTER_CONFIG).is_file():
        raise SourceError(folder, f"holds no {ADAPTER_CONFIG}: transformers needs the PEFT config")
    if local.is_file():
        return folder, local
    if weight_name:
        return folder, named_weight(folder, weight_name)
    for name in PEFT_WEIGHTS:
        if (folder / name).is_file() and inside(folder, folder / name):
            return folder, folder / name
    raise SourceError(folder, f"holds no weight file {PEFT_WEIGHTS[0]}")


def lora_file(local: Path, weight_name: str | None) -> Path:
    """The one weight file a local LoRA path stands for, as diffusers chooses it.

    WEIGHT_NAME in a folder; else the folder's one .safetensors file (the standard name
    when there are several), else its one pickled file. SourceError when there is no choice.
    """
    if local.is_file():
        return local
    if not local.is_dir():
        raise SourceError(local, "does not exist")
    if weight_name:
        return named_weight(local, weight_name)
    found = _files(local, "*.safetensors")
    if len(found) > 1 and local / STANDARD_LORA in found:
        found = [local / STANDARD_LORA]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SourceError(local, f"holds several weight files ({names}); name one in weight_name")
    if not found:
        found = [p for p in _files(local) if is_pickle(p.name)]
    if len(found) != 1:
        raise SourceError(local, "holds no single weight file")
    return found[0]


def adapter_config(folder: Path) -> dict[str, Any]:
    """FOLDER's adapter_config.json, a JSON object naming its peft_type; else SourceError."""
    file = folder / ADAPTER_CONFIG
    try:
        config = json.loads(file.read_bytes())
    except OSError as exc:
        raise SourceError(file, f"cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise SourceError(file, f"is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SourceError(file, "must hold a JSON object")
    if not isinstance(config.get("peft_type"), str):
        raise SourceError(file, "names no peft_type, so it is no PEFT adapter config")
    return config


def adapter_base(folder: Path) -> tuple[str, str | None]:
    """The base model an adapter FOLDER names, and the hub revision peft recorded for it.

    The base is `builtin:NAME`, a local folder (a relative path resolves against FOLDER, not
    the working directory) or a hub id; SourceError when it can be none of them.
    """
    config = adapter_config(folder)
    file = folder / ADAPTER_CONFIG
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise SourceError(file, "names no base model (base_model_name_or_path)")
    if builtin_name(base) is not None:
        if builtin_name(base) not in builtin.catalog():
            raise SourceError(file, f"names base model '{base}', which is no builtin")
        return base, None
    local = on_disk(base, folder)
    if local is not None:
        if not local.is_dir():
            relative = " (a relative path resolves against the adapter folder)" * (
                not base.startswith(("/", "~"))
            )
            raise SourceError(file, f"names base model '{base}', which is no folder{relative}")
        return str(local), None
    problem = hub_id_problem(base)
    if problem:
        raise SourceError(
            file, f"names base model '{base}', neither a local folder nor a hub id: {problem}"
        )
    revision = config.get("revision")  # peft records the base model's revision here
    return base, revision if isinstance(revision, str) else None


def base_source(folder: Path) -> tuple[str, str | None]:
    """adapter_base, with a builtin made and given as its folder: what from_pretrained takes."""
    base, revision = adapter_base(folder)
    name = builtin_name(base)
    return (str(builtin.resolve(name)), None) if name is not None else (base, revision)


MODEL_INDEX = "model_index.json"


@dataclass(frozen=True)
class PipelineIndex:
    """What a diffusers pipeline's model_index.json says: its class and its components."""

    pipeline: str
    components: tuple[str, ...]
    saved_without: tuple[str, ...] = ()  # saved as [null, null], e.g. text_encoder_3=None

    @classmethod
    def of(cls, index: Mapping[str, Any]) -> PipelineIndex:
        entries = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
        empty = (k for k, v in entries.items() if all(part is None for part in v))
        name = str(index.get("_class_name", "the pipeline"))
        return cls(name, tuple(sorted(entries)), tuple(sorted(empty)))

    def unknown(self, name: str) -> str | None:
        """Why NAME cannot be left out: it is none of the pipeline's components; else None."""
        if name in self.components:
            return None
        return (
            f"{self.pipeline} has no component '{name}'; "
            f"its components: {', '.join(self.components)}"
        )


def pipeline_index(folder: Path | str | None) -> PipelineIndex | None:
    """The model_index.json of a diffusers pipeline folder; None for anything else, or an
    index that cannot be read."""
    if folder is None or not (Path(folder) / MODEL_INDEX).is_file():
        return None
    try:
        index = json.loads((Path(folder) / MODEL_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return PipelineIndex.of(index) if isinstance(index, dict) else None


def model_source(model: Model, base_dir: Path) -> str:
    """A local folder for builtin and local paths; a hub id stays as written."""
    name = builtin_name(model.path)
    if name is not None:
        return str(builtin.resolve(name))
    local = on_disk(model.path, base_dir)
    if local is not None:
        return str(local)
    _hub_id(model.path)
    adapter_repo = _hub_adapter_repo(model.path, model.revision)
    if adapter_repo is not None:  # as from_pretrained on an adapter repository: its base
        return str(adapter_repo)
    _cached_when_offline(model.path, model.revision)
    return model.path


def _hub_adapter_repo(repo_id: str, revision: str | None) -> Path | None:
    """The cached folder of hub repo REPO_ID when it is an adapter repository (it holds
    adapter_config.json), fetched as need be; None for any other repo (a full model).

    Offline, the cache alone answers: a repo whose adapter_config.json is not cached is
    taken for a model, and the model's own check then says whether it is cached.
    """
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        huggingface_hub.hf_hub_download(repo_id, ADAPTER_CONFIG, revision=revision)
    except (LocalEntryNotFoundError, EntryNotFoundError):
        return None
    except HfHubHTTPError as exc:
        raise SourceError(None, f"the hub refused '{repo_id}': {exc}") from None
    try:  # what a PEFT adapter folder holds: its config and safetensors weights
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors"]
        )
    except LocalEntryNotFoundError:
        raise _not_cached(repo_id) from None
    except HfHubHTTPError as exc:
        raise SourceError(None, f"the hub refused '{repo_id}': {exc}") from None
    return Path(folder)


def adapter_local(adapter: Adapter, base_dir: Path) -> Path | None:
    """The local file or folder holding ADAPTER's weights, fetched into the hub cache if need be.

    None for an adapter built from a config.
    """
    if adapter.path is None:
        return None
    name = builtin_name(adapter.path)
    if name is not None:
        return in_subfolder(builtin.resolve(name), adapter.subfolder)
    local = on_disk(adapter.path, base_dir)
    if local is not None:
        return in_subfolder(local, adapter.subfolder) if local.is_dir() else local
    _hub_id(adapter.path)
    return _from_hub(adapter)


def _hub_id(repo_id: str) -> None:
    problem = hub_id_problem(repo_id)
    if problem:
        raise SourceError(None, f"'{repo_id}' is neither a local path nor a hub id: {problem}")


def _not_cached(repo_id: str) -> SourceError:
    return SourceError(
        None,
        f"'{repo_id}' is not in the local hub cache and the hub cannot be reached"
        " (HF_HUB_OFFLINE or no network)",
    )


def _cached_when_offline(repo_id: str, revision: str | None) -> None:
    """Offline, a hub id must be in the cache: say so at once, before a library says it worse."""
    from huggingface_hub import constants

    from runner.record.identity import hub_snapshot

    if constants.HF_HUB_OFFLINE and hub_snapshot(repo_id, revision) is None:
        raise _not_cached(repo_id)


def _from_hub(adapter: Adapter) -> Path:
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    assert adapter.path is not None
    subfolder = adapter.subfolder
    if subfolder is not None and subfolder_problem(subfolder):
        raise SourceError(None, str(subfolder_problem(subfolder)))
    try:
        if adapter.weight_name:
            file = huggingface_hub.hf_hub_download(
                adapter.path, adapter.weight_name, subfolder=subfolder, revision=adapter.revision
            )
            with contextlib.suppress(EntryNotFoundError):  # PEFT folders need it; LoRA files don't
                huggingface_hub.hf_hub_download(
                    adapter.path, ADAPTER_CONFIG, subfolder=subfolder, revision=adapter.revision
                )
            return Path(file).parent
        inside = f"{subfolder}/" if subfolder else ""
        patterns = [f"{inside}*.json", f"{inside}*.safetensors"]
        if adapter.allow_pickle:
            patterns += [f"{inside}*{suffix}" for suffix in PICKLE_SUFFIXES]
        folder = huggingface_hub.snapshot_download(
            adapter.path, revision=adapter.revision, allow_patterns=patterns
        )
        return in_subfolder(Path(folder), subfolder)
    except LocalEntryNotFoundError:
        raise _not_cached(adapter.path) from None
    except HfHubHTTPError as exc:
        raise SourceError(None, f"the hub refused '{adapter.path}': {exc}") from None
