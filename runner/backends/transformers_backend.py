"""Causal LMs with PEFT adapters, through transformers' PEFT integration.

Adapters go through `model.load_adapter` / `add_adapter` / `set_adapter` /
`disable_adapters`; weights are peft's per-layer `set_scale`, as diffusers'
`set_weights_and_activate_adapters` applies them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from runner.backends import Completion
from runner.backends.devices import resolve_device, resolve_dtype, torch_dtype
from runner.errors import StepError
from runner.spec import Adapter, Generate, Model

CONFIG = "adapter_config.json"
SAFETENSORS = "adapter_model.safetensors"
PICKLE = "adapter_model.bin"
# A config adapter is made right after torch.manual_seed(CONFIG_SEED), so by hand it is
# `torch.manual_seed(0); model.add_adapter(LoraConfig(**options), adapter_name=name)`.
CONFIG_SEED = 0


class TransformersBackend:
    """One AutoModelForCausalLM and its tokenizer; the interpreter keeps the adapter books."""

    def __init__(self, device: str, dtype: str, trust_remote_code: bool = False) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.trust_remote_code = trust_remote_code
        self.model: Any = None
        self.tokenizer: Any = None
        self._disabled = False

    def load_model(self, model: Model, local: Path | str | None) -> None:
        """Load from a local folder (`local`) or the hub id `model.path`; an adapter folder
        loads its base with the adapter attached as `default`."""
        folder = Path(local) if local is not None else _hub_adapter_repo(model)
        if folder is None or not (folder / CONFIG).is_file():
            self._load_base(str(local or model.path), model.revision, model.trust_remote_code)
            return
        base, revision = _base_of(folder)
        self._load_base(base, revision, model.trust_remote_code)
        if (folder / "tokenizer_config.json").is_file():
            self._load_tokenizer(str(folder), None, model.trust_remote_code)
        self.load_adapter(Adapter(name="default", path=str(folder)), folder)

    def load_adapter(self, adapter: Adapter, local: Path | None) -> None:
        """Attach the adapter and make it the only active one; on failure leave no trace."""
        known = dict(getattr(self.model, "peft_config", None) or {})
        before = self.model.active_adapters() if known else []
        try:
            if adapter.config is not None:
                self._add_from_config(adapter)
            else:
                self._load_from_files(adapter, local)
            self.model.set_adapter(adapter.name)
        except BaseException:
            now = getattr(self.model, "peft_config", None) or {}
            if adapter.name in now and adapter.name not in known:
                self.model.delete_adapter(adapter.name)
                if before:
                    self.model.set_adapter(before)
            raise
        self.model.eval()  # new adapter modules (dropout) start in training mode
        if self._disabled:  # layers wrapped just now start enabled
            self.model.disable_adapters()

    def set_adapters(self, weights: dict[str, float]) -> None:
        """Activate exactly these adapters: base + sum of weight x each adapter's delta."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.model.set_adapter(list(weights))
        for module in self.model.modules():
            if isinstance(module, BaseTunerLayer):
                for name, weight in weights.items():
                    module.set_scale(name, weight)  # alpha / r x weight, not cumulative

    def disable(self) -> None:
        """Run the base model; adapters stay loaded."""
        if getattr(self.model, "peft_config", None):
            self.model.disable_adapters()
        self._disabled = True

    def enable(self) -> None:
        """Run the active adapters again."""
        if getattr(self.model, "peft_config", None):
            self.model.enable_adapters()
        self._disabled = False

    def generate(self, step: Generate) -> list[Completion]:
        """All prompts as one left-padded batch, seeded right before `generate`.

        `token_ids` are the new tokens up to and including the first end-of-sequence token;
        the padding `generate` puts after it, while other rows go on, is dropped.
        """
        args = dict(step.args)
        prompts = list(step.prompts)
        if args.pop("chat", False):
            conversations = [[{"role": "user", "content": p}] for p in prompts]
            batch = self.tokenizer.apply_chat_template(
                conversations,
                add_generation_prompt=True,
                tokenize=True,
                padding=True,
                return_tensors="pt",
                return_dict=True,
            )
        else:
            batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].to(self.device)
        attention_mask = batch["attention_mask"].to(self.device)
        torch.manual_seed(step.seed)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pad_token_id=self.tokenizer.pad_token_id,
            **args,
        )
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos]) - {None}
        completions = []
        for prompt, row in zip(prompts, out[:, input_ids.shape[1] :].tolist(), strict=True):
            ends = [i for i, token in enumerate(row) if token in stops]
            ids = row[: ends[0] + 1] if ends else row
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(prompt, text, ids, step.seed))
        return completions

    def _load_base(self, source: str, revision: str | None, trust_remote_code: bool) -> None:
        from transformers import AutoModelForCausalLM

        trust = trust_remote_code or self.trust_remote_code
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source, revision=revision, dtype=torch_dtype(self.dtype), trust_remote_code=trust
            )
        except OSError as error:
            raise StepError(f"cannot load model {source!r}: {error}") from error
        self.model = model.to(self.device).eval()
        self._disabled = False
        self._load_tokenizer(source, revision, trust)

    def _load_tokenizer(self, source: str, revision: str | None, trust: bool) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, trust_remote_code=trust or self.trust_remote_code
        )
        tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer

    def _add_from_config(self, adapter: Adapter) -> None:
        from peft import LoraConfig

        assert adapter.config is not None
        try:
            config = LoraConfig(**adapter.config.options)
            torch.manual_seed(CONFIG_SEED)
            self.model.add_adapter(config, adapter_name=adapter.name)
        except (TypeError, ValueError) as error:
            raise StepError(f"cannot add a LoRA from its config: {error}") from error

    def _load_from_files(self, adapter: Adapter, local: Path | None) -> None:
        from peft import PeftConfig

        folder, weights = _adapter_files(adapter, local)
        state = _read_weights(weights, adapter.allow_pickle)
        try:
            with _quiet("transformers.integrations.peft"):
                info = self.model.load_adapter(
                    peft_config=PeftConfig.from_pretrained(str(folder)),
                    adapter_state_dict=state,
                    adapter_name=adapter.name,
                    ignore_mismatched_sizes=True,  # so we can say which shapes differ
                )
        except ValueError as error:
            raise StepError(f"does not fit the model: {error}") from error
        problems = [
            f"{k} is {tuple(s)} in the file but {tuple(m)} in the model"
            for k, s, m in sorted(info.mismatched_keys)
        ]
        problems += [
            f"{k} is missing from the file"
            for k in sorted(info.missing_keys)
            if _is_lora_param(k, adapter.name)
        ]
        problems += [f"{k} has no place in the model" for k in sorted(info.unexpected_keys)]
        if problems:
            shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
            raise StepError(f"{weights.name} does not fit the model: {shown}")


def _is_lora_param(key: str, name: str) -> bool:
    """Whether `key` is one of adapter `name`'s own weights (`...lora_A.<name>.weight`)."""
    parts = key.split(".")
    return any(p.startswith("lora_") and n == name for p, n in zip(parts, parts[1:]))


def _hub_adapter_repo(model: Model) -> Path | None:
    """The downloaded repository when the hub id `model.path` is an adapter, else None."""
    from huggingface_hub import snapshot_download
    from transformers.utils import find_adapter_config_file

    if find_adapter_config_file(model.path, revision=model.revision) is None:
        return None
    return Path(snapshot_download(model.path, revision=model.revision))


def _base_of(folder: Path) -> tuple[str, str | None]:
    """The base model an adapter folder names, with relative paths taken from the folder."""
    from runner.builtin import PREFIX, catalog, resolve

    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise StepError(f"{folder / CONFIG} does not name its base model")
    if base.startswith(PREFIX):
        if base[len(PREFIX) :] not in catalog():
            raise StepError(f"{folder / CONFIG} names an unknown builtin model {base!r}")
        return str(resolve(base[len(PREFIX) :])), None
    relative = not os.path.isabs(base) and (
        base.startswith(("./", "../")) or (folder / base).exists()
    )
    if relative:
        return str((folder / base).resolve()), None
    return base, config.get("revision")  # peft records the base's revision here


def _adapter_files(adapter: Adapter, local: Path | None) -> tuple[Path, Path]:
    """(folder holding adapter_config.json, weight file) for a local or hub adapter."""
    if local is None:
        from huggingface_hub import snapshot_download

        assert adapter.path is not None
        patterns = [CONFIG, adapter.weight_name or "adapter_model.*"]
        try:
            local = Path(
                snapshot_download(adapter.path, revision=adapter.revision, allow_patterns=patterns)
            )
        except OSError as error:
            raise StepError(f"cannot download {adapter.path!r}: {error}") from error
    if local.is_file():
        folder, weights = local.parent, local
    else:
        folder = local
        default = (
            PICKLE
            if (local / PICKLE).is_file() and not (local / SAFETENSORS).is_file()
            else SAFETENSORS
        )
        weights = local / (adapter.weight_name or default)
    if not (folder / CONFIG).is_file():
        raise StepError(f"no {CONFIG} in {folder}: transformers needs the PEFT config")
    if not weights.is_file():
        raise StepError(f"no weight file {weights.name} in {folder}")
    return folder, weights


def _read_weights(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """A safetensors file, or a pickle checkpoint only when the spec allows it."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as error:
            raise StepError(f"{path.name} is not a valid safetensors file ({error})") from error
    if not allow_pickle:
        raise StepError(
            f"{path.name} is a pickle checkpoint, which can run code when read; "
            "convert it to safetensors, or set allow_pickle: true to trust it"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise StepError(f"{path.name} is not a readable checkpoint ({error})") from error


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence one logger: transformers' adapter load report lists base weights whose names
    contain the adapter's name as missing; real mismatches are reported by us instead."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
