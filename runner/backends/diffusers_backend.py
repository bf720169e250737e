"""The diffusers backend: a pipeline, its LoRA adapters (diffusers or kohya format), images."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError

from runner import sources
from runner.backends.devices import resolve_device, resolve_dtype, torch_dtype
from runner.backends.quiet import quiet_loading
from runner.backends.results import Picture
from runner.errors import StepError
from runner.spec.types import Adapter, Generate, Model

# diffusers' own preferred file name when a folder holds several weight files.
STANDARD_NAME = "pytorch_lora_weights.safetensors"
# Where each pipeline family takes the LoRA scale per call (UNet, then transformer pipelines).
SCALE_KWARGS = ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs")
# What a bad adapter file makes diffusers, peft or safetensors raise while loading it.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def lora_file(adapter: Adapter, local: Path) -> Path:
    """The one weight file a local adapter path stands for; refuses pickle and ambiguity."""
    if local.is_dir() and adapter.weight_name:
        local = local / adapter.weight_name
    if local.is_dir():
        found = sorted(p for p in local.glob("*.safetensors") if p.is_file())
        if len(found) > 1 and (local / STANDARD_NAME).is_file():
            found = [local / STANDARD_NAME]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise StepError(
                f"{local} holds several weight files ({names}); name one in weight_name"
            )
        if not found:
            pickled = sorted(p.name for p in local.iterdir() if sources.is_pickle(p.name))
            if len(pickled) != 1:
                raise StepError(f"{local} holds no single weight file")
            found = [local / pickled[0]]
        local = found[0]
    if not local.is_file():
        raise StepError(f"{local} does not exist")
    if sources.is_pickle(local.name) and not adapter.allow_pickle:
        raise StepError(sources.pickle_refusal(local.name))
    return local


class DiffusersBackend:
    """Runs a diffusers pipeline; adapters are LoRAs loaded with load_lora_weights."""

    def __init__(self, device: str, dtype: str, trust_remote_code: bool = False) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.trust_remote_code = trust_remote_code
        self.pipe: Any = None  # the DiffusionPipeline, once load_model ran

    def load_model(self, model: Model, local: Path | str | None) -> None:
        """Load the pipeline from `local` (a folder or hub id), or from `model.path` when None."""
        with warnings.catch_warnings():
            # `dtype` replaces `torch_dtype` only in recent diffusers; the old name works in all.
            warnings.filterwarnings("ignore", ".*torch_dtype.*", FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(
                str(local) if local is not None else model.path,
                revision=model.revision,
                variant=model.variant,
                torch_dtype=torch_dtype(self.dtype),
                trust_remote_code=self.trust_remote_code,
            )
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=None)  # tqdm's default: shown on a terminal only
        self.pipe = pipe

    def adapters(self) -> set[str]:
        """Every adapter name loaded into any component of the pipeline."""
        return {name for names in self.pipe.get_list_adapters().values() for name in names}

    def load_adapter(self, adapter: Adapter, local: Path | None) -> None:
        """load_lora_weights under the adapter's name; it becomes the only active adapter."""
        pipe, name = self.pipe, adapter.name
        if adapter.config is not None:
            raise StepError(
                "a diffusers pipeline loads LoRA weights from a path; "
                "an adapter made from a config has no weights to load"
            )
        if not hasattr(pipe, "load_lora_weights"):
            raise StepError(f"{type(pipe).__name__} does not take LoRA adapters")
        if name in self.adapters():
            raise StepError("an adapter of that name is already loaded")
        weight_name: str | None
        if local is not None:
            file = lora_file(adapter, local)
            source, weight_name = str(file.parent), file.name
        else:
            source, weight_name = str(adapter.path), adapter.weight_name
            if weight_name and sources.is_pickle(weight_name) and not adapter.allow_pickle:
                raise StepError(sources.pickle_refusal(weight_name))
        try:
            with quiet_loading():
                pipe.load_lora_weights(
                    source,
                    weight_name=weight_name,
                    adapter_name=name,
                    revision=adapter.revision,
                    use_safetensors=None if adapter.allow_pickle else True,
                )
        except LOAD_ERRORS as exc:
            if name in self.adapters():  # a component that took it before another refused
                pipe.delete_adapters(name)
            reason = "\n".join(str(exc).splitlines()[:3])  # a shape mismatch lists every layer
            raise StepError(f"does not load into {type(pipe).__name__}: {reason}") from exc
        if name not in self.adapters():
            # diffusers only logs a warning when no key of the file names a module of the pipeline.
            raise StepError(
                f"none of its weights fit a module of {type(pipe).__name__}; "
                "is it a LoRA for this kind of pipeline?"
            )
        # A component the new LoRA does not touch would keep the previous one active otherwise.
        pipe.set_adapters([name])

    def set_adapters(self, weights: dict[str, float]) -> None:
        self.pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))

    def disable(self) -> None:
        if self.adapters():  # diffusers raises on a pipeline that has no LoRA yet
            self.pipe.disable_lora()

    def enable(self) -> None:
        if self.adapters():
            self.pipe.enable_lora()

    def unload_adapters(self) -> None:
        """unload_lora_weights: every component gets its own layers back, LoRA-free."""
        if hasattr(self.pipe, "unload_lora_weights"):
            self.pipe.unload_lora_weights()

    def generate(self, step: Generate) -> list[Picture]:
        """One pipeline call; image k of the step draws from a CPU generator seeded seed + k."""
        pipe = self.pipe
        args = dict(step.args)
        per_prompt = int(args.pop("num_images_per_prompt", 1))
        lora_scale = args.pop("lora_scale", None)
        accepted = inspect.signature(pipe.__call__).parameters
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise StepError(f"{type(pipe).__name__} takes no {', '.join(unknown)}")
        if lora_scale is not None:
            where = next((key for key in SCALE_KWARGS if key in accepted), None)
            if where is None:
                raise StepError(f"{type(pipe).__name__} takes no lora_scale")
            args[where] = {"scale": float(lora_scale)}
        if isinstance(args.get("negative_prompt"), str):  # SD wants a list beside a prompt list
            args["negative_prompt"] = [args["negative_prompt"]] * len(step.prompts)
        count = len(step.prompts) * per_prompt
        generators = [torch.Generator("cpu").manual_seed(step.seed + k) for k in range(count)]
        try:
            images = pipe(
                prompt=list(step.prompts),
                num_images_per_prompt=per_prompt,
                generator=generators,
                output_type="pil",
                **args,
            ).images
        except ValueError as exc:  # the pipeline's own checks of its arguments
            raise StepError(f"{type(pipe).__name__}: {exc}") from exc
        for side in ("width", "height"):
            # StableDiffusionPipeline ignores a height given without a width, and vice versa.
            if side in args and getattr(images[0], side) != args[side]:
                raise StepError(
                    f"{type(pipe).__name__} made {images[0].width}x{images[0].height} "
                    f"images, not the {side} {args[side]} asked; give width and height"
                )

        def used(name: str) -> Any:
            default = accepted[name].default if name in accepted else None
            return step.args.get(name, default)

        params = {
            "negative_prompt": used("negative_prompt"),
            "num_inference_steps": used("num_inference_steps"),
            "guidance_scale": used("guidance_scale"),
            "lora_scale": 1.0 if lora_scale is None else float(lora_scale),
            "scheduler": type(pipe.scheduler).__name__,
        }
        return [
            Picture(
                image,
                step.prompts[k // per_prompt],
                step.seed + k,
                {**params, "width": image.width, "height": image.height},
            )
            for k, image in enumerate(images)
        ]
