"""Causal LMs with PEFT adapters, through transformers' PEFT integration.

Adapters go through `load_adapter` / `add_adapter` / `set_adapter` / `disable_adapters`;
weights are peft's per-layer `set_scale`, as diffusers' `set_weights_and_activate_adapters`.
"""

from __future__ import annotations

import difflib
import pickle
import re
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from runner.backends import (
    fusing,
    likelihood,
    load_report,
    lora_mixing,
    merging,
    quantizing,
    saving,
    training,
)
from runner.backends.base import CannotMix, Logged, Ticker, refuse_bad_name
from runner.backends.devices import gpu_memory, resolve_device, resolve_dtype, seed, torch_dtype
from runner.backends.quiet import ADAPTER_FALSE_ALARMS, captured, fold, one_line
from runner.errors import StepError
from runner.record import manifest as m
from runner.results import Completion, Likelihood, ModelSetup
from runner.sources import folders, hub, names
from runner.spec.arguments import Arguments, TextArguments
from runner.spec.types import Adapter, Generate, Merge, Model, Quantization, Train
from runner.spec.weights import Weight

# A config adapter is made right after torch.manual_seed(CONFIG_SEED): by hand, that is
# `torch.manual_seed(0); model.add_adapter(LoraConfig(**options), adapter_name=name)`.
CONFIG_SEED = 0
# A compare makes one adapter of a several-adapter row (cat-merged) to mix it with others;
# False runs such rows as batches of their own.
MERGE_ROWS = True
MAX_BATCH = 64  # rows of one mixed generate call; more buys nothing on a CPU
CPU_CACHE_BYTES = 2 << 30  # the KV cache a CPU batch may take
# What `generate` does where neither the call nor the model's generation config says
# (transformers 5 leaves unset fields None in the config).
GENERATE_DEFAULTS: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "max_length": 20,
}


class TransformersBackend:
    """One AutoModelForCausalLM and its tokenizer; the interpreter keeps the adapter books."""

    def __init__(
        self,
        device: str,
        dtype: str,
        trust_remote_code: bool = False,
        ticker: Ticker | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.trust_remote_code = trust_remote_code
        self.ticker: Ticker = ticker or Logged()
        self.model_path = ""  # as the spec writes it, for messages
        self.model: Any = None
        self.tokenizer: Any = None
        self.attn_implementation: str | None = None  # as the spec asks; None: transformers'
        self.merged: dict[str, lora_mixing.Merged] = {}  # a compare step's merged rows
        self.layers: list[Any] | None = None  # the LoRA layers, while a compare mixes
        self.kept: fusing.Kept | None = None  # the base weights as they were, while fused
        self.quantization: Quantization | None = None  # a quantized base, as the spec says

    def load_model(self, model: Model, local: Path | str | None) -> None:
        """Load a local folder or the hub id `model.path`; an adapter folder loads the base
        its adapter_config.json names, with the adapter attached as `default`."""
        trust = model.trust_remote_code or self.trust_remote_code
        self.model_path = model.path
        self.attn_implementation = model.attn_implementation
        self.quantization = model.quantization
        folder = folders.adapter_folder(local)
        if folder is None:
            # transformers itself attaches the adapter of a hub adapter repository
            self._load_base(str(local or model.path), model.revision, trust)
            return
        base, revision = hub.base_source(folder)
        has_tokenizer = (folder / "tokenizer_config.json").is_file()
        self._load_base(base, revision, trust, str(folder) if has_tokenizer else None)
        self.load_adapter(Adapter(name="default", path=str(folder)), folder)

    def setup(self) -> ModelSetup:
        """The attention implementation the model runs (transformers' choice when not asked)."""
        return ModelSetup(
            attn_implementation=self.model.config._attn_implementation,
            quantization=self.quantization.written() if self.quantization else None,
        )

    def load_adapter(self, adapter: Adapter, local: Path | None) -> m.LoadReport:
        """Attach the adapter and make it the only active one; on failure leave no trace.
        Returns what the load did (modules, unmatched keys, rank, alpha, hashes)."""
        refuse_bad_name(adapter.name)
        known = set(getattr(self.model, "peft_config", None) or {})
        before = self.model.active_adapters() if known else []
        try:
            with captured(self.ticker.verbose) as said:
                if adapter.config is not None:
                    self._add_from_config(adapter)
                    missed: list[str] = []
                    file = None
                else:
                    missed, file = self._load_from_files(adapter, local)
            self.model.set_adapter(adapter.name)
            loaded = load_report.report(
                {"model": self.model},
                adapter.name,
                {"model": missed} if missed else {},
                "config",
                file,
            )
        except BaseException:
            if adapter.name not in known and adapter.name in getattr(self.model, "peft_config", {}):
                with captured(self.ticker.verbose):
                    self.model.delete_adapter(adapter.name)
                if before:
                    self.model.set_adapter(before)
            raise
        fold(self.ticker, f"adapter '{adapter.name}'", said, ADAPTER_FALSE_ALARMS)
        self.model.eval()  # new adapter modules (dropout) start in training mode
        return loaded

    def set_adapters(self, weights: dict[str, Weight]) -> None:
        """Activate exactly these adapters: base + sum of weight x each adapter's delta."""
        from peft.tuners.lora import LoraLayer

        scales = {n: w for n, w in weights.items() if not isinstance(w, dict)}
        if len(scales) < len(weights):
            raise StepError("weights per component are for diffusers pipelines")
        self.model.set_adapter(list(weights))
        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                for name, weight in scales.items():
                    module.set_scale(name, weight)  # weight x alpha / r, not cumulative

    def disable(self) -> None:
        """Run the base model; adapters stay loaded."""
        if getattr(self.model, "peft_config", None):  # with no adapter the base runs anyway
            self.model.disable_adapters()

    def enable(self) -> None:
        """Run the active adapters again."""
        if getattr(self.model, "peft_config", None):
            self.model.enable_adapters()

    def fuse(self, weights: dict[str, Weight], lora_scale: float) -> dict[str, Any]:
        """peft's merge_adapter of the active adapters, layer by layer as it does; keeps the
        base weights it changes (a hash, and a CPU copy that unfuse puts back)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        if lora_scale != 1.0:
            raise StepError("lora_scale of fuse is a diffusers argument")
        self.kept = fusing.Kept.before_fuse({"model": self.model})
        with captured(self.ticker.verbose):
            for module in self.model.modules():
                if isinstance(module, BaseTunerLayer):
                    module.merge(adapter_names=list(weights))
        return {"base_sha256": self.kept.sha256, "fused": list(weights)}

    def unfuse(self) -> dict[str, Any]:
        """peft's unmerge_adapter, then the base weights checked against fuse's hash."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        if self.kept is None:
            raise StepError("unfuse with nothing fused")
        with captured(self.ticker.verbose):
            for module in self.model.modules():
                if isinstance(module, BaseTunerLayer):
                    module.unmerge()
        kept, self.kept = self.kept, None
        return {"base_sha256": kept.sha256, **kept.put_back({"model": self.model})}

    def delete_adapters(self, names: list[str], active: dict[str, Weight]) -> None:
        """peft's delete_adapter; the adapters still active stay active (none: the base)."""
        with captured(self.ticker.verbose):
            self.model.delete_adapter(names)
        rest = sorted(getattr(self.model, "peft_config", None) or {})
        if active:
            self.set_adapters(active)
        elif rest:  # peft would make another adapter active on its own
            self.set_adapters(dict.fromkeys(rest, 0.0))

    def unload_adapters(self) -> None:
        """Delete every adapter, then put each layer peft wrapped back in its place.

        `delete_adapter` keeps the wrappers (and a disabled flag with them) around the base
        layers; replacing them as `PeftModel.unload` does gives back the model as loaded.
        """
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        if self.kept is not None:
            self.unfuse()
        names = list(getattr(self.model, "peft_config", None) or {})
        if names:
            with captured(self.ticker.verbose):
                self.model.delete_adapter(names)
        wrapped = [
            (name, module)
            for name, module in self.model.named_modules()
            if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper))
        ]
        for name, module in wrapped:
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name)
            if getattr(parent, child, None) is not module:
                continue  # inside a wrapper already replaced
            if isinstance(module, AuxiliaryTrainingWrapper):
                base = module.unload_and_optionally_merge_module(
                    merge=False, safe_merge=False, adapter_names=None
                )
            else:
                base = module.get_base_layer()
            setattr(parent, child, base)
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config
        self.model._hf_peft_config_loaded = False
        self.model.eval()

    def generate(self, step: Generate) -> list[Completion]:
        """All prompts as one left-padded batch, torch seeded right before `generate`.

        `token_ids` are the new tokens up to and including the first end-of-sequence token:
        the padding `generate` adds after it, while longer rows go on, is dropped.
        """
        args = _text(step.args)
        prompts = list(step.prompts)
        if args.chat:
            batch = self.tokenizer.apply_chat_template(
                [[{"role": "user", "content": p}] for p in prompts],
                add_generation_prompt=True,
                padding=True,
                return_tensors="pt",
                return_dict=True,
            )
        else:
            batch = self.tokenizer(prompts, padding=True, return_tensors="pt")
        input_ids = batch["input_ids"].to(self.device)
        seed(self.device, step.seed)
        with captured(self.ticker.verbose) as said:
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=batch["attention_mask"].to(self.device),
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=self._counter(input_ids.shape[1], args),
                **_decoding(args),
            )
        fold(self.ticker, "generate", said)
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        completions = []
        for prompt, row in zip(prompts, out[:, input_ids.shape[1] :].tolist(), strict=True):
            ends = [i for i, token in enumerate(row) if token in stops]
            ids = row[: ends[0] + 1] if ends else row
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(prompt, text, ids, step.seed))
        return completions

    # --- making adapters (the MakesAdapters capability) -------------------------------

    def merge(self, step: Merge) -> None:
        """peft's add_weighted_adapter on the model's own LoRA layers."""
        refuse_bad_name(step.name)
        with captured(self.ticker.verbose) as said:
            merging.merge({"model": self.model}, step)
        fold(self.ticker, f"merge '{step.name}'", said)
        self.model.eval()

    def formats(self) -> tuple[str, ...]:
        return ("peft",)

    def train(
        self,
        step: Train,
        start: dict[str, bytes] | None,
        keep: Callable[[dict[str, bytes]], None],
    ) -> list[dict[str, Any]]:
        """A plain torch loop over the adapter's own weights (runner.backends.training),
        from checkpoint START when given, handing KEEP a checkpoint now and then; the
        adapter is the only active one afterwards."""
        self.model.set_adapter(step.adapter)
        for module in self.model.modules():  # a weight from an earlier set_adapters
            if hasattr(module, "set_scale") and step.adapter in getattr(module, "scaling", {}):
                module.set_scale(step.adapter, 1.0)

        def tick(done: int, loss: float) -> None:
            self.ticker.tick(done, step.steps, f"training steps (loss {loss:.4f})")

        with captured(self.ticker.verbose) as said:
            losses = training.train(
                self.model, self.tokenizer, step, self.device, tick, start, keep
            )
        fold(self.ticker, f"train '{step.adapter}'", said)
        return losses

    def adapter_files(self, name: str, format: str) -> dict[str, bytes]:
        """A PEFT adapter folder, as PeftModel.save_pretrained writes it."""
        if format != "peft":
            raise StepError(f"a causal LM's adapter is written as peft, not {format}")
        return saving.peft_folder(self.model, name, self.model_path)

    def next_token_logprobs(self, step: Generate, continuation: list[int]) -> Any:
        """One forward pass of the prompt (as `generate` encodes it) and CONTINUATION under
        the current adapters: the log-softmax of the logits that predict each token of
        CONTINUATION (the ScoresTokens capability)."""
        if _text(step.args).chat:
            batch = self.tokenizer.apply_chat_template(
                [[{"role": "user", "content": step.prompts[0]}]],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
        else:
            batch = self.tokenizer([step.prompts[0]], return_tensors="pt")
        prompt = batch["input_ids"][0].tolist()
        ids = torch.tensor([prompt + list(continuation)], device=self.device)
        with torch.no_grad(), captured(self.ticker.verbose):
            logits = self.model(input_ids=ids).logits[0].float()
        start = len(prompt) - 1
        wanted = logits[start : start + max(1, len(continuation))]
        return torch.log_softmax(wanted, dim=-1).cpu().double().numpy()

    def settings(self, args: Arguments) -> dict[str, Any]:
        """The decoding settings a generate call with ARGS runs with, the model's generation
        config filling what ARGS leaves out (sampling ones only where it samples)."""
        config = self.model.generation_config
        text = _text(args)

        def value(key: str, written: Any = None) -> Any:
            found = getattr(config, key, None) if written is None else written
            return GENERATE_DEFAULTS.get(key) if found is None else found

        known = {
            "do_sample": value("do_sample", text.do_sample),
            "num_beams": value("num_beams", text.num_beams),
            "max_new_tokens": value("max_new_tokens", text.max_new_tokens),
            "repetition_penalty": value("repetition_penalty", text.repetition_penalty),
        }
        if known["do_sample"]:  # what matters only where generate samples
            known["temperature"] = value("temperature", text.temperature)
            known["top_p"] = value("top_p", text.top_p)
            known["top_k"] = value("top_k", text.top_k)
        if known["max_new_tokens"] is None:  # generate then stops at max_length, prompt included
            known["max_length"] = value("max_length")
        return {k: v for k, v in known.items() if v is not None}

    # --- compare: mixed-adapter batches (the MixesAdapters capability) -------------------

    def deterministic(self, args: Arguments) -> bool:
        """Greedy with one beam: a cell's tokens do not depend on its seed or its batch."""
        config = self.model.generation_config
        text = _text(args)
        sampled = config.do_sample if text.do_sample is None else text.do_sample
        beams = (config.num_beams if text.num_beams is None else text.num_beams) or 1
        return not sampled and int(beams) == 1

    def mix(self, weights: dict[str, Weight] | None) -> tuple[str, float] | None:
        """The adapter that runs WEIGHTS as one row of a mixed batch and its scale there:
        the adapter itself for one adapter, a temporary cat-merged one for several; None
        where peft cannot mix it (DoRA, merged layers, other PEFT types)."""
        if weights is None:
            return lora_mixing.BASE, 1.0
        if any(isinstance(w, dict) for w in weights.values()):
            return None  # per component: diffusers only, refused by set_adapters
        scales = {n: float(w) for n, w in weights.items() if not isinstance(w, dict)}
        layers = self._layers()
        names = list(weights)
        if any(n == lora_mixing.BASE or n.startswith(lora_mixing.TEMPORARY) for n in names):
            return None  # an adapter that bears a name with a meaning in a mixed batch
        if not lora_mixing.plain(self.model, layers, names):
            return None
        if len(names) == 1:
            return names[0], scales[names[0]]
        if not MERGE_ROWS or not lora_mixing.mergeable(layers, names):
            return None
        name = f"{lora_mixing.TEMPORARY}{len(self.merged)}"
        self.merged[name] = lora_mixing.merge(layers, scales)
        return name, 1.0

    def unmix(self) -> None:
        """Drop the merged rows `mix` made (they never entered the model)."""
        self.merged = {}
        self.layers = None

    def _layers(self) -> list[Any]:
        if self.layers is None:
            self.layers = lora_mixing.lora_layers(self.model)
        return self.layers

    def batch_size(self, step: Generate) -> int:
        """How many cells one call may hold: their KV cache within an eighth of the GPU's
        memory (a fixed budget on a CPU). From the total, not what is free now, so that the
        same machine batches the same way again (`reproduce`)."""
        config = self.model.config
        layers = getattr(config, "num_hidden_layers", None) or 32
        hidden = getattr(config, "hidden_size", None) or 4096
        per_token = 2 * layers * hidden * torch.empty((), dtype=self.model.dtype).element_size()
        longest = max(len(self.tokenizer(p)["input_ids"]) for p in step.prompts)
        new = self._new_tokens(_text(step.args)) or 20
        if self.device.startswith("cuda"):
            budget = gpu_memory(self.device) // 8
        else:
            budget = CPU_CACHE_BYTES
        return int(max(1, min(MAX_BATCH, budget // (per_token * (longest + new)))))

    def generate_mixed(
        self, step: Generate, names: list[str], scales: dict[str, float]
    ) -> list[Completion]:
        """`generate` with prompt i run by adapter NAMES[i] (peft's `adapter_names`), each
        adapter at its scale in SCALES."""
        layers = self._layers()
        own = {n: w for n, w in scales.items() if n in names and n not in self.merged}
        lora_mixing.set_scales(layers, own)
        if any(layer.disable_adapters for layer in layers):  # enabling walks the whole model
            self.enable()
        try:
            with lora_mixing.adapter_names(layers, names, self.merged):
                return self.generate(step)
        except ValueError as error:  # peft: "Length of `adapter_names` should be the same..."
            if "adapter_names" not in str(error):
                raise
            raise CannotMix(one_line(str(error))) from error

    # --- score: log-likelihoods as lm-eval computes them (the ScoresText capability) ------

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), as lm-eval's `_encode_pair`."""
        return likelihood.encode_pair(self.tokenizer, context, continuation)

    def score_batch_size(self, longest: int) -> int:
        """Sequences of LONGEST tokens one forward may hold: their float32 log-probs (twice:
        logits and log_softmax) within an eighth of the GPU's memory, a fixed budget on a
        CPU; from the total, so the same machine batches the same way again."""
        vocab = int(getattr(self.model.config, "vocab_size", None) or 32000)
        per_row = 2 * 4 * vocab * max(1, longest)
        budget = gpu_memory(self.device) // 8 if self.device.startswith("cuda") else CPU_CACHE_BYTES
        return int(max(1, min(MAX_BATCH, budget // per_row)))

    def loglikelihoods(
        self,
        pairs: list[tuple[list[int], list[int]]],
        names: list[str] | None = None,
        scales: dict[str, float] | None = None,
    ) -> list[Likelihood]:
        """Each pair's log-likelihood in one forward; with NAMES, pair i by adapter NAMES[i]
        (peft's `adapter_names`) at its scale in SCALES."""
        limit = likelihood.max_length(self.model.config, self.tokenizer)
        if names is None:
            return likelihood.forward(self.model, pairs, limit)
        layers = self._layers()
        own = {n: w for n, w in (scales or {}).items() if n in names and n not in self.merged}
        lora_mixing.set_scales(layers, own)
        if any(layer.disable_adapters for layer in layers):
            self.enable()
        try:
            with lora_mixing.adapter_names(layers, names, self.merged):
                return likelihood.forward(self.model, pairs, limit)
        except ValueError as error:
            if "adapter_names" not in str(error):
                raise
            raise CannotMix(one_line(str(error))) from error

    def _load_base(
        self, source: str, revision: str | None, trust: bool, tokenizer: str | None = None
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust}
        # Only when asked: left out, transformers chooses (sdpa where torch has it).
        attention = {"attn_implementation": self.attn_implementation}
        if self.quantization is not None:  # bitsandbytes places the layers as it loads them
            kwargs["quantization_config"] = quantizing.transformers_config(
                self.quantization, self.dtype
            )
            kwargs["device_map"] = self.device
        try:
            with captured(self.ticker.verbose) as said:
                model: Any = AutoModelForCausalLM.from_pretrained(
                    source,
                    dtype=torch_dtype(self.dtype),
                    **kwargs,
                    **(attention if self.attn_implementation else {}),
                )
                kwargs.pop("quantization_config", None)
                kwargs.pop("device_map", None)
                if tokenizer is not None:
                    kwargs["revision"] = None  # a local adapter folder has no revisions
                self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or source, **kwargs)
        except OSError as error:
            raise StepError(f"cannot load model {source!r}: {one_line(str(error))}") from error
        except (ImportError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            if not self.attn_implementation or not re.search(r"(?i)attention|attn", reason):
                raise
            # e.g. flash_attention_2 without the flash-attn package or a CUDA GPU
            raise StepError(
                f"attn_implementation {self.attn_implementation} cannot be used here: {reason}"
            ) from error
        fold(self.ticker, f"model {self.model_path or source}", said)
        self.model = (model if self.quantization else model.to(self.device)).eval()
        self.tokenizer.padding_side = "left"  # decoder-only models continue at the right edge
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _add_from_config(self, adapter: Adapter) -> None:
        from peft import LoraConfig

        assert adapter.config is not None
        try:
            config = LoraConfig(**adapter.config.options)
            seed(self.device, CONFIG_SEED)
            self.model.add_adapter(config, adapter_name=adapter.name)
        except (TypeError, ValueError) as error:
            raise StepError(f"cannot add a LoRA from its config: {one_line(str(error))}") from error
        # peft adapts the modules any entry names and says nothing of an entry that names none
        targets = adapter.config.options.get("target_modules")
        if isinstance(targets, list):
            names = [n for n, _ in self.model.named_modules() if n]
            leaves = sorted({n.rpartition(".")[2] for n in names})
            for target in targets:
                if not any(n == target or n.endswith("." + str(target)) for n in names):
                    near = difflib.get_close_matches(str(target), leaves, n=3, cutoff=0.5)
                    raise StepError(
                        f"target_modules entry {target!r} names no module of the model"
                        + (f"; the closest module names are {', '.join(near)}" if near else "")
                    )

    def _load_from_files(self, adapter: Adapter, local: Path | None) -> tuple[list[str], Path]:
        """Load the adapter's files; returns the file's keys that matched no module, and
        the weight file."""
        from peft import PeftConfig

        folder, weights = _adapter_files(adapter, local)
        state = _read_weights(weights, adapter.allow_pickle)
        try:
            info = self.model.load_adapter(
                peft_config=PeftConfig.from_pretrained(str(folder)),
                adapter_state_dict=state,
                adapter_name=adapter.name,
                ignore_mismatched_sizes=True,  # so that we can say which shapes differ
            )
        except ValueError as error:  # e.g. its target modules are not in this model
            raise StepError(f"cannot attach it to the model: {one_line(str(error))}") from error
        shapes = [
            f"{k} is {tuple(f)} in the file but {tuple(mo)} in the model"
            for k, f, mo in sorted(info.mismatched_keys)
        ]
        extra = sorted(info.unexpected_keys)
        missing = [
            k
            for k in sorted(info.missing_keys)
            if any(p.startswith("lora_") and n == adapter.name for p, n in pairwise(k.split(".")))
        ]
        lora_keys = [k for k in state if "lora_" in k]
        if extra and len(extra) >= len(lora_keys):  # not one of its weights landed
            raise load_report.no_module_error({"model": self.model}, extra)
        for problems, what in (
            (shapes, "have other shapes, e.g."),
            # beside keys that match no module, the missing ones are their other side
            ([] if extra else missing, "are missing from the file, e.g."),
        ):
            if problems:  # one line: the libraries' own reports list every layer
                raise StepError(
                    f"{weights.name} does not fit the model {self.model_path}: "
                    f"{len(problems)} weights {what} {problems[0]}"
                )
        return extra, weights

    def _counter(self, prompt: int, args: TextArguments) -> StoppingCriteriaList:
        """A stopping criterion that never stops: it counts new tokens for the ticker."""
        return StoppingCriteriaList([_Count(self.ticker, prompt, self._new_tokens(args))])

    def _new_tokens(self, args: TextArguments) -> int | None:
        """The step's max_new_tokens, else the generation config's."""
        written = args.max_new_tokens
        return self.model.generation_config.max_new_tokens if written is None else written


def _decoding(args: TextArguments) -> dict[str, Any]:
    """What `model.generate` takes of ARGS: the ones given (chat is the tokenizer's)."""
    given = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": args.do_sample,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "num_beams": args.num_beams,
        "repetition_penalty": args.repetition_penalty,
    }
    return {k: v for k, v in given.items() if v is not None}


def _text(args: Arguments) -> TextArguments:
    """ARGS, a causal LM's; a diffusers step's are refused."""
    if not isinstance(args, TextArguments):
        raise StepError(f"a causal LM takes no {', '.join(sorted(args.written()))}")
    return args


class _Count(StoppingCriteria):
    """Never stops; tells TICKER how many of TOTAL new tokens a call has made."""

    def __init__(self, ticker: Ticker, prompt: int, total: int | None) -> None:
        self.ticker, self.prompt, self.total = ticker, prompt, total

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        self.ticker.tick(input_ids.shape[1] - self.prompt, self.total, "new tokens")
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _adapter_files(adapter: Adapter, local: Path | None) -> tuple[Path, Path]:
    """(the folder with adapter_config.json, the weight file); hub adapters arrive fetched."""
    if local is None:
        raise StepError("a transformers adapter needs a local folder or file")
    folder, weights = folders.peft_files(local, adapter.weight_name)
    folders.adapter_config(folder)  # a readable PEFT config, or an error that names the file
    return folder, weights


def _read_weights(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """A safetensors file, or a pickle checkpoint only when the spec allows it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safe = names.is_safetensors(path.name)
    if not safe and not names.is_pickle(path.name):
        raise StepError(
            f"{path.name} is neither a safetensors file nor a pickled checkpoint "
            f"({', '.join((names.SAFETENSORS, *names.PICKLE_SUFFIXES))})"
        )
    if not safe and not allow_pickle:
        raise StepError(names.pickle_refusal(path.name))
    try:
        return load_file(path) if safe else torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as error:
        kind = "safetensors" if safe else "pickle checkpoint"
        raise StepError(f"{path.name} is not a valid {kind} file ({error})") from error
