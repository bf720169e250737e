"""What a local model or adapter folder holds: its PEFT config, its weight files, its base
model, a diffusers pipeline's index. Reads the disk; never the hub, no deep-learning library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.builtin.entry import PREFIX
from runner.builtin.known import catalog
from runner.errors import SourceError
from runner.sources.names import (
    builtin_name,
    hub_id_problem,
    is_local,
    is_pickle,
    is_safetensors,
    subfolder_problem,
    weight_name_problem,
)

ADAPTER_CONFIG = "adapter_config.json"
# What transformers' load_adapter reads from a PEFT folder: safetensors, else the pickle.
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# diffusers' own name for the one to load when a folder holds several LoRA files.
STANDARD_LORA = "pytorch_lora_weights.safetensors"


def adapter_folder(local: Path | str | None) -> Path | None:
    """LOCAL when it is an adapter folder (it holds adapter_config.json), else None."""
    if local is None:
        return None
    folder = Path(local)
    return folder if (folder / ADAPTER_CONFIG).is_file() else None


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
    if path.startswith(PREFIX) or not (base_dir / path).exists():
        return None
    return (base_dir / path).resolve()


def _roots(folder: Path) -> tuple[str, ...]:
    """Where links of FOLDER may lead: the folder itself, and for a folder inside a hub cache
    snapshot (`models--o--n/snapshots/<commit>/...`), that repository's `blobs/`."""
    root = os.path.realpath(folder)
    parts = Path(root).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and "--" in parts[i - 1]:
            return root, os.path.join(*parts[:i], "blobs")
    return (root,)


def inside(folder: Path, path: Path) -> bool:
    """Whether PATH, with every link resolved, stays inside FOLDER (or its hub `blobs/`)."""
    real = os.path.realpath(path)
    return any(
        real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in _roots(folder)
    )


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
    return is_safetensors(path.name) or is_pickle(path.name)


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
        if builtin_name(base) not in catalog():
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
