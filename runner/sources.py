"""Where a model or adapter written in a spec lives on this machine."""

from __future__ import annotations

import contextlib
from pathlib import Path

from runner import builtin
from runner.errors import RunnerError
from runner.spec.checks import PICKLE_SUFFIXES, on_disk
from runner.spec.types import Adapter, Model


def model_source(model: Model, base_dir: Path) -> str:
    """A local folder for builtin and local paths; a hub id stays as written."""
    if model.path.startswith(builtin.PREFIX):
        return str(builtin.resolve(model.path[len(builtin.PREFIX) :]))
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
    if adapter.path.startswith(builtin.PREFIX):
        return builtin.resolve(adapter.path[len(builtin.PREFIX) :])
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
