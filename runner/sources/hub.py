"""Where a model or adapter written in a spec is loaded from: a builtin made on first use,
a local path, or a hub id fetched into the hub cache (refused at once when offline and absent).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import runner.builtin as builtin
from runner.errors import SourceError
from runner.sources.folders import ADAPTER_CONFIG, adapter_base, in_subfolder, on_disk
from runner.sources.names import (
    PICKLE_SUFFIXES,
    builtin_name,
    hub_id_problem,
    subfolder_problem,
)
from runner.spec.types import Adapter, Model


def base_source(folder: Path) -> tuple[str, str | None]:
    """adapter_base, with a builtin made and given as its folder: what from_pretrained takes."""
    base, revision = adapter_base(folder)
    name = builtin_name(base)
    return (str(builtin.resolve(name)), None) if name is not None else (base, revision)


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


def clip_source(path: str, base_dir: Path) -> str:
    """The CLIP model of a compare's clip_score as from_pretrained takes it: a builtin's or
    local folder, or a hub id (in the cache, when offline)."""
    name = builtin_name(path)
    if name is not None:
        return str(builtin.resolve(name))
    local = on_disk(path, base_dir)
    if local is not None:
        return str(local)
    _hub_id(path)
    _cached_when_offline(path, None)
    return path


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
        prefix = f"{subfolder}/" if subfolder else ""
        patterns = [f"{prefix}*.json", f"{prefix}*.safetensors"]
        if adapter.allow_pickle:
            patterns += [f"{prefix}*{suffix}" for suffix in PICKLE_SUFFIXES]
        folder = huggingface_hub.snapshot_download(
            adapter.path, revision=adapter.revision, allow_patterns=patterns
        )
        return in_subfolder(Path(folder), subfolder)
    except LocalEntryNotFoundError:
        raise _not_cached(adapter.path) from None
    except HfHubHTTPError as exc:
        raise SourceError(None, f"the hub refused '{adapter.path}': {exc}") from None
