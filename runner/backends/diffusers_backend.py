"""The diffusers backend: a pipeline, its LoRA adapters (diffusers or kohya format), images."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError

from runner.backends import fusing, load_report, merging, quantizing, saving, scheduling
from runner.backends.base import Logged, Ticker, refuse_bad_name
from runner.backends.devices import gpu_memory, resolve_device, resolve_dtype, torch_dtype
from runner.backends.picture_mixing import PictureMixing
from runner.backends.quiet import ADAPTER_FALSE_ALARMS, ANSI, captured, fold, one_line
from runner.errors import StepError, describe
from runner.record import adapter_file
from runner.record import manifest as m
from runner.results import GeneratedImage, ModelSetup
from runner.sources import folders, names
from runner.spec import block_presets
from runner.spec import weights as weight_forms
from runner.spec.arguments import Arguments, ImageArguments
from runner.spec.types import Adapter, Generate, Merge, Model, Quantization, Scheduler
from runner.spec.weights import Weight

# A compare's images per pipeline call: pixels at a time on a CPU, bytes per pixel of the
# GPU memory's eighth (latents, activations and the VAE's decoding, roughly).
CPU_PIXELS = 16 * 512 * 512
BYTES_PER_PIXEL = 4096
MAX_IMAGES = 32
# Where each pipeline family takes the LoRA scale per call (UNet, then transformer pipelines).
SCALE_KWARGS = ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs")
# What a bad adapter file makes diffusers, peft or safetensors raise while loading it.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)
# How torch's load_state_dict and peft's inject_adapter say that a LoRA is for another model.
SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
    r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)
TARGETS_NOT_FOUND = re.compile(r"Target modules \{(.*)\} not found in the base model", re.DOTALL)
# A row of transformers' load report (text encoders), which its exception only points to.
REPORT_MISMATCH = re.compile(
    r"^(\S.*?)\s*\|\s*MISMATCH\s*\|.*?ckpt: torch\.Size\(\[([^\]]*)\]\) "
    r"vs model:\s*torch\.Size\(\[([^\]]*)\]\)",
    re.MULTILINE,
)


def lora_file(adapter: Adapter, local: Path) -> Path:
    """The one weight file a local adapter path stands for; refuses pickle and ambiguity."""
    file = folders.lora_file(local, adapter.weight_name)
    if names.is_pickle(file.name) and not adapter.allow_pickle:
        raise StepError(names.pickle_refusal(file.name))
    return file


def root_cause(exc: BaseException) -> str:
    """What went wrong first, in one line: diffusers wraps a hub error in one that says "see
    the stacktrace above", and no stack trace is shown."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return describe(exc)


class DiffusersBackend(PictureMixing):
    """Runs a diffusers pipeline; adapters are LoRAs loaded with load_lora_weights; a
    compare's rows share calls through PictureMixing."""

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
        self.pipe: Any = None  # the DiffusionPipeline, once load_model ran
        self.model_path = ""  # as the spec writes it, for messages
        self.own_scheduler: Any = None  # the scheduler the pipeline came with: the base config
        self.scheduler: Any = None  # the model's scheduler: every step without its own runs it
        self.left_out: tuple[str, ...] = ()  # components loaded as None
        self.kept: fusing.Kept | None = None  # the base weights as they were, while fused
        self.quantization: Quantization | None = None  # a quantized base, as the spec says
        self.weights: dict[str, Weight] = {}  # set_adapters' weights, step ranges taken out
        self.ranges: dict[str, tuple[int, int]] = {}  # adapter -> (start, stop) of its steps
        self.off = False  # disabled: step ranges switch nothing

    def load_model(self, model: Model, local: Path | str | None) -> None:
        """Load the pipeline from `local` (a folder or hub id), or from `model.path` when None,
        with `model.components` left out and `model.scheduler` in place of its own."""
        source = str(local) if local is not None else model.path
        index = self._index(model, source)
        if model.scheduler is not None:  # a misspelt key fails before the weights load
            cls = scheduling.scheduler_class(model.scheduler.type)
            scheduling.check_options(cls, model.scheduler.options)
        with captured(self.ticker.verbose) as said, warnings.catch_warnings():
            # `dtype` replaces `torch_dtype` only in recent diffusers; the old name works in all.
            warnings.filterwarnings("ignore", ".*torch_dtype.*", FutureWarning)
            try:
                pipe = DiffusionPipeline.from_pretrained(
                    source,
                    **self._quantized(model, index),
                    revision=model.revision,
                    variant=model.variant,
                    torch_dtype=torch_dtype(self.dtype),
                    trust_remote_code=self.trust_remote_code,
                    **dict.fromkeys(model.components),  # as from_pretrained(text_encoder_3=None)
                )
            except OSError as exc:
                raise StepError(f"cannot load pipeline {source!r}: {root_cause(exc)}") from exc
            except ValueError as exc:
                # "expected [...], but only {...} were passed": a component saved as None
                missing = [
                    name
                    for name in (index.saved_without if index else ())
                    if name not in model.components and f"'{name}'" in str(exc)
                ]
                if not missing:
                    raise
                raise StepError(
                    f"{index.pipeline if index else 'the pipeline'} was saved without "
                    f"{', '.join(missing)}: leave {'it' if len(missing) == 1 else 'them'} out "
                    f"with model.components: {{{', '.join(f'{n}: null' for n in missing)}}}"
                ) from exc
        fold(self.ticker, f"model {model.path}", said)
        pipe.to(self.device)
        # The runner shows its own progress (through the ticker); verbose: tqdm's default.
        pipe.set_progress_bar_config(disable=None if self.ticker.verbose else True)
        self.pipe, self.left_out, self.model_path = pipe, model.components, model.path
        self.own_scheduler = self.scheduler = getattr(pipe, "scheduler", None)
        if model.scheduler is not None:
            if self.own_scheduler is None:
                raise StepError(f"{type(pipe).__name__} has no scheduler to replace")
            pipe.scheduler = self.scheduler = scheduling.build(
                model.scheduler, self.own_scheduler.config
            )

    def _quantized(self, model: Model, index: folders.PipelineIndex | None) -> dict[str, Any]:
        """from_pretrained's quantization_config for a quantized base, else nothing."""
        self.quantization = model.quantization
        if model.quantization is None:
            return {}
        has_unet = index is None or "unet" in index.components
        denoiser = "unet" if has_unet else "transformer"
        config = quantizing.diffusers_config(model.quantization, self.dtype, denoiser)
        return {"quantization_config": config}

    def _index(self, model: Model, source: str) -> folders.PipelineIndex | None:
        """The pipeline's model_index.json; every component left out must be one of its
        components, as diffusers ignores any other name with a warning."""
        index = folders.pipeline_index(source)
        if index is None and model.components:  # a hub id: its model_index.json alone
            config = DiffusionPipeline.load_config(source, revision=model.revision)
            index = folders.PipelineIndex.of(dict(config))
        for name in model.components:
            problem = index.unknown(name) if index else None
            if problem:
                raise StepError(problem)
        return index

    def setup(self) -> ModelSetup:
        """The model's scheduler and the components left out."""
        return ModelSetup(
            scheduler=scheduling.used(self.scheduler) if self.scheduler is not None else None,
            components_left_out=self.left_out,
            quantization=self.quantization.written() if self.quantization else None,
        )

    def adapters(self) -> set[str]:
        """Every adapter name loaded into any component of the pipeline."""
        return {name for names in self.pipe.get_list_adapters().values() for name in names}

    def load_adapter(self, adapter: Adapter, local: Path | None) -> m.LoadReport:
        """load_lora_weights under the adapter's name; it becomes the only active adapter.
        Returns what the load did (modules per component, unmatched keys, rank, alpha...)."""
        refuse_bad_name(adapter.name)
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
        file: Path | None = None
        loaded_from: Any  # a folder or hub id, or a state dict with the metadata's alpha
        alpha_source, with_alpha = "default", None
        if local is not None:
            file = lora_file(adapter, local)
            source, weight_name = str(file.parent), file.name
            alpha_source, with_alpha = _alpha(file)
        else:
            source, weight_name = str(adapter.path), adapter.weight_name
            if weight_name and names.is_pickle(weight_name) and not adapter.allow_pickle:
                raise StepError(names.pickle_refusal(weight_name))
        said: list[str] = []
        loaded_from = source
        if file is not None and with_alpha is not None:
            loaded_from, weight_name = with_alpha, None
        options = {
            "weight_name": weight_name,
            "revision": adapter.revision,
            "use_safetensors": None if adapter.allow_pickle else True,
        }
        try:
            with captured(self.ticker.verbose) as said:
                pipe.load_lora_weights(loaded_from, adapter_name=name, **options)
        except LOAD_ERRORS as exc:
            if name in self.adapters():  # a component that took it before another refused
                with captured(self.ticker.verbose):
                    pipe.delete_adapters(name)
            reason = misfit(exc, said)
            raise StepError(f"does not fit the model {self.model_path}: {reason}") from exc
        components = {
            part: module
            for part, module in pipe.components.items()
            if isinstance(module, torch.nn.Module)
        }
        # diffusers drops the keys that name no module without a word: the state dict it
        # loads, set against the layers it injected, says which they were.
        unet = getattr(pipe, "unet", None)  # maps kohya's SDXL (sgm) block names, as a load
        mapping = {"unet_config": unet.config} if unet is not None else {}
        with captured(self.ticker.verbose):
            state = pipe.lora_state_dict(loaded_from, **options, **mapping)
        keys = sorted((state[0] if isinstance(state, tuple) else state).keys())
        missed = load_report.unmatched_keys(components, name, keys)
        if name not in self.adapters():
            # diffusers only logs a warning when no key of the file names a module of the pipeline.
            raise load_report.no_module_error(components, keys)
        fold(self.ticker, f"adapter '{name}'", said, ADAPTER_FALSE_ALARMS)
        # A component the new LoRA does not touch would keep the previous one active otherwise.
        pipe.set_adapters([name])
        return load_report.report(components, name, missed, alpha_source, file)

    def set_adapters(self, weights: dict[str, Weight]) -> None:
        """set_adapters with each weight a number or diffusers' per-component (per-block)
        mapping; a component it would skip with only a warning is refused. An adapter with
        a step range runs at weight 0 outside it: generate switches it at step boundaries."""
        pipe = self.pipe
        loadable = getattr(pipe, "_lora_loadable_modules", [])
        holding = pipe.get_list_adapters()
        self.ranges = {n: r for n, w in weights.items() if (r := weight_forms.steps_of(w))}
        self.weights = {
            n: self._presets_out(n, weight_forms.unranged(w), holding) for n, w in weights.items()
        }
        for name, weight in self.weights.items():
            for component in weight if isinstance(weight, dict) else ():
                if component not in loadable or getattr(pipe, component, None) is None:
                    raise StepError(
                        f"{type(pipe).__name__} has no LoRA component '{component}' "
                        f"(adapter '{name}'); its LoRA components: {', '.join(loadable)}"
                    )
                if name not in holding.get(component, []):
                    raise StepError(
                        f"adapter '{name}' has no layers in {component}; "
                        f"a weight there would change nothing"
                    )
            unet_weight = weight.get("unet") if isinstance(weight, dict) else None
            if isinstance(unet_weight, dict):
                self._check_blocks(unet_weight)
        self._set(self._at(0))

    def _presets_out(self, name: str, weight: Weight, holding: dict[str, list[str]]) -> Weight:
        """WEIGHT with a block weight preset written out, on a UNet of SD 1.x's layout."""
        if block_presets.named(weight) is None:
            return weight
        unet = getattr(self.pipe, "unet", None)
        why = (
            block_presets.layout_problem(type(self.pipe).__name__, unet.config)
            if unet is not None
            else f"{type(self.pipe).__name__} has no unet: block weight presets are for UNets"
        )
        if why is not None:
            raise StepError(f"adapter '{name}': {why}")
        return block_presets.expanded(weight, name in holding.get("text_encoder", []))

    def _at(self, step: int) -> dict[str, Weight]:
        """The weights that run at denoising step STEP: 0 for an adapter outside its range."""
        return {
            name: weight if start <= step < stop else 0.0
            for name, weight in self.weights.items()
            for start, stop in [self.ranges.get(name, (step, step + 1))]
        }

    def _set(self, weights: dict[str, Weight]) -> None:
        pipe = self.pipe
        try:
            with captured(self.ticker.verbose):
                pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))
        except (ValueError, KeyError) as exc:  # a block the UNet does not have, and the like
            raise StepError(f"{type(pipe).__name__}.set_adapters: {one_line(str(exc))}") from exc

    def _check_blocks(self, weight: dict[str, Any]) -> None:
        """Each block named has attention layers: diffusers scales only those, and passes
        over any other block without a word."""
        unet = self.pipe.unet
        for side in ("down", "up"):
            blocks = weight.get(side)
            if not isinstance(blocks, dict):
                continue
            scaled = [
                i for i, b in enumerate(getattr(unet, f"{side}_blocks")) if hasattr(b, "attentions")
            ]
            for block in blocks:
                if int(block.removeprefix("block_")) not in scaled:
                    have = ", ".join(f"block_{i}" for i in scaled) or "none"
                    raise StepError(
                        f"the unet's {side}.{block} has no attention layers to scale "
                        f"(its {side} blocks with them: {have})"
                    )

    def disable(self) -> None:
        self.off = True
        if self.adapters():  # diffusers raises on a pipeline that has no LoRA yet
            self.pipe.disable_lora()

    def enable(self) -> None:
        self.off = False
        if self.adapters():
            self.pipe.enable_lora()

    def _modules(self) -> dict[str, Any]:
        return {k: v for k, v in self.pipe.components.items() if isinstance(v, torch.nn.Module)}

    def fuse(self, weights: dict[str, Weight], lora_scale: float) -> dict[str, Any]:
        """fuse_lora of the active adapters, their weights as set_adapters set them; keeps
        the base weights it changes (a hash, and a CPU copy that unfuse puts back)."""
        self.kept = fusing.Kept.before_fuse(self._modules())
        with captured(self.ticker.verbose):
            self.pipe.fuse_lora(lora_scale=lora_scale, adapter_names=list(weights))
        return {"base_sha256": self.kept.sha256, "fused": list(weights)}

    def unfuse(self) -> dict[str, Any]:
        """unfuse_lora, then the base weights checked bit for bit against fuse's hash."""
        if self.kept is None:
            raise StepError("unfuse with nothing fused")
        with captured(self.ticker.verbose):
            self.pipe.unfuse_lora()
        kept, self.kept = self.kept, None
        return {"base_sha256": kept.sha256, **kept.put_back(self._modules())}

    def delete_adapters(self, names: list[str], active: dict[str, Weight]) -> None:
        """delete_adapters; the adapters still active stay active (none: the base runs)."""
        with captured(self.ticker.verbose):
            self.pipe.delete_adapters(names)
        rest = sorted(self.adapters())
        if active:
            self.set_adapters(active)
        elif rest:  # peft would make another adapter active on its own
            self.set_adapters(dict.fromkeys(rest, 0.0))

    def unload_adapters(self) -> None:
        """unload_lora_weights: every component gets its own layers back, LoRA-free."""
        if self.kept is not None:
            self.unfuse()
        if hasattr(self.pipe, "unload_lora_weights"):
            self.pipe.unload_lora_weights()

    def merge(self, step: Merge) -> None:
        """peft's add_weighted_adapter on each component's LoRA layers (unet or transformer,
        text encoders): diffusers has no merge of its own."""
        refuse_bad_name(step.name)
        if step.name in self.adapters():
            raise StepError(f"an adapter named '{step.name}' is loaded already")
        modules = {
            part: module
            for part, module in self.pipe.components.items()
            if isinstance(module, torch.nn.Module)
        }
        with captured(self.ticker.verbose) as said:
            merging.merge(modules, step)
        fold(self.ticker, f"merge '{step.name}'", said)

    def formats(self) -> tuple[str, ...]:
        return ("diffusers", "kohya")

    def adapter_files(self, name: str, format: str) -> dict[str, bytes]:
        """A diffusers LoRA file (save_lora_weights) or a kohya one."""
        if format == "diffusers":
            return saving.diffusers_file(self.pipe, name)
        if format == "kohya":
            return saving.kohya_file(self.pipe, name)
        raise StepError(f"a pipeline's adapter is written as diffusers or kohya, not {format}")

    def generate(self, step: Generate) -> list[GeneratedImage]:
        """One pipeline call; image k of the step draws from a CPU generator seeded seed + k."""
        per_prompt = step.args.per_prompt
        starts = [step.seed + i * per_prompt for i in range(len(step.prompts))]
        return self.generate_cells(step, starts)

    def batch_size(self, step: Generate) -> int:
        """How many images one call may hold: their latents and activations within an eighth
        of the GPU's memory (a fixed pixel budget on a CPU). From the total, not what is free
        now, so that the same machine batches the same way again (`reproduce`)."""
        args = _image(step.args, self.pipe)
        width = args.width or self._default_side()
        height = args.height or self._default_side()
        if self.device.startswith("cuda"):
            budget = gpu_memory(self.device) // 8 // BYTES_PER_PIXEL
        else:
            budget = CPU_PIXELS
        return int(max(1, min(MAX_IMAGES, budget // (width * height))))

    def _default_side(self) -> int:
        unet = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        size = getattr(getattr(unet, "config", None), "sample_size", None)
        scale = getattr(self.pipe, "vae_scale_factor", 8)
        return int(size * scale) if isinstance(size, int) else 1024

    def generate_cells(self, step: Generate, seeds: list[int]) -> list[GeneratedImage]:
        """One pipeline call; image k of prompt i draws from a CPU generator seeded
        SEEDS[i] + k (a compare's cells, each with its own seed, in one batch)."""
        pipe = self.pipe
        written = _image(step.args, pipe)
        scheduler = self.scheduler
        if written.scheduler is not None:  # this step's own, as the spec wrote it
            if self.own_scheduler is None:
                raise StepError(f"{type(pipe).__name__} has no scheduler to replace")
            own = Scheduler.from_written(written.scheduler)
            scheduler = scheduling.build(own, self.own_scheduler.config)
        per_prompt, lora_scale = written.per_prompt, written.lora_scale
        negatives: list[str] | None = None  # one per prompt
        if isinstance(written.negative_prompt, str):  # SD wants a list beside a prompt list
            negatives = [written.negative_prompt] * len(step.prompts)
        elif written.negative_prompt is not None:
            negatives = list(written.negative_prompt)
        passed = {
            "negative_prompt": negatives,
            "num_inference_steps": written.num_inference_steps,
            "guidance_scale": written.guidance_scale,
            "height": written.height,
            "width": written.width,
        }
        args: dict[str, Any] = {k: v for k, v in passed.items() if v is not None}
        accepted = inspect.signature(pipe.__call__).parameters
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise StepError(f"{type(pipe).__name__} takes no {', '.join(unknown)}")
        if lora_scale is not None:
            where = next((key for key in SCALE_KWARGS if key in accepted), None)
            if where is None:
                raise StepError(f"{type(pipe).__name__} takes no lora_scale")
            args[where] = {"scale": float(lora_scale)}
        count = len(step.prompts) * per_prompt
        drawn = [seed + k for seed in seeds for k in range(per_prompt)]
        assert len(drawn) == count
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in drawn]
        ranged = bool(self.ranges) and not self.off
        if "callback_on_step_end" in accepted:
            args["callback_on_step_end"] = self._tick
        elif ranged:
            raise StepError(f"{type(pipe).__name__} takes no callback_on_step_end for step ranges")
        if ranged:  # the previous call may have ended with an adapter switched off
            self._set(self._at(0))
        if scheduler is not None:
            pipe.scheduler = scheduler
        try:
            with captured(self.ticker.verbose) as said:
                images = pipe(
                    prompt=list(step.prompts),
                    num_images_per_prompt=per_prompt,
                    generator=generators,
                    output_type="pil",
                    **args,
                ).images
        except ValueError as exc:  # the pipeline's own checks of its arguments
            raise StepError(f"{type(pipe).__name__}: {one_line(str(exc))}") from exc
        except Exception as exc:
            if not self.left_out:
                raise
            # A pipeline that needs a component it was loaded without fails in its own way.
            raise StepError(
                f"{type(pipe).__name__} with {', '.join(self.left_out)} left out: "
                f"{one_line(f'{type(exc).__name__}: {exc}')}"
            ) from exc
        finally:
            if self.scheduler is not None:  # the next step runs the model's scheduler again
                pipe.scheduler = self.scheduler
        fold(self.ticker, type(pipe).__name__, said)
        for side, asked in (("width", written.width), ("height", written.height)):
            # StableDiffusionPipeline ignores a height given without a width, and vice versa.
            if asked is not None and getattr(images[0], side) != asked:
                raise StepError(
                    f"{type(pipe).__name__} made {images[0].width}x{images[0].height} "
                    f"images, not the {side} {asked} asked; give width and height"
                )

        def used(name: str, given: Any) -> Any:
            default = accepted[name].default if name in accepted else None
            return default if given is None else given

        params = {
            "num_inference_steps": used("num_inference_steps", written.num_inference_steps),
            "guidance_scale": used("guidance_scale", written.guidance_scale),
            "lora_scale": 1.0 if lora_scale is None else float(lora_scale),
            "scheduler": type(scheduler).__name__,
        }
        drawn_with = scheduling.used(scheduler) if scheduler is not None else None
        return [
            GeneratedImage(
                image,
                step.prompts[k // per_prompt],
                drawn[k],
                {
                    **params,
                    "negative_prompt": negatives[k // per_prompt] if negatives else None,
                    "width": image.width,
                    "height": image.height,
                },
                drawn_with,
            )
            for k, image in enumerate(images)
        ]

    def _tick(
        self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        """callback_on_step_end: counts denoising steps, switches step-ranged adapters for
        the next step (as set_adapters by hand in a callback does), hands the tensors back
        untouched."""
        self.ticker.tick(index + 1, getattr(pipe, "num_timesteps", None), "denoising steps")
        if self.ranges and not self.off:
            after = self._at(index + 1)
            if after != self._at(index):
                self._set(after)
        return tensors


def _image(args: Arguments, pipe: Any) -> ImageArguments:
    """ARGS, a pipeline's; a causal LM step's are refused."""
    if not isinstance(args, ImageArguments):
        raise StepError(f"{type(pipe).__name__} takes no {', '.join(sorted(args.written()))}")
    return args


def _alpha(file: Path) -> tuple[str, dict[str, Any] | None]:
    """Where the LoRA's alpha comes from, and the state dict to load in place of the file
    when it comes from the metadata: a kohya file without `.alpha` tensors whose
    `ss_network_alpha` says what it was trained with (diffusers would run it at alpha = rank).
    """
    found = adapter_file.header(file)
    if found is None:
        return "default", None
    keys = [k for k in found[1] if k != "__metadata__"]
    if any(k.endswith(".alpha") for k in keys):
        return "file", None
    meta = adapter_file.metadata(file)
    if "lora_adapter_metadata" in meta:  # diffusers saves the LoraConfig beside its weights
        return "config", None
    alpha = adapter_file.metadata_alpha(meta)
    stems = {k.removesuffix(".lora_down.weight") for k in keys if k.endswith(".lora_down.weight")}
    if alpha is None or not stems:
        return "default", None
    from safetensors.torch import load_file

    state: dict[str, Any] = load_file(file)
    state.update({f"{stem}.alpha": torch.tensor(alpha) for stem in stems})
    return "metadata", state


def misfit(exc: BaseException, said: list[str]) -> str:
    """Why an adapter does not load, in one line: the libraries list every layer.

    SAID is what the libraries logged meanwhile: transformers raises only "look at the
    above report" and logs the shapes in that report.
    """
    text = str(exc)
    shapes = SIZE_MISMATCH.findall(text)
    rows = sorted(row for message in said for row in REPORT_MISMATCH.findall(ANSI.sub("", message)))
    if not shapes and rows:  # the report folds layer numbers into {0, 1}
        shapes = [row for row in rows for _ in range(_layers(row[0]))]
    if shapes:
        key, theirs, ours = shapes[0]
        return (
            f"{len(shapes)} weights have other shapes, e.g. {key} is ({theirs}) in the file but "
            f"({ours}) in the model"
        )
    targets = TARGETS_NOT_FOUND.search(text)
    if targets:
        names = re.findall(r"'([^']*)'", targets.group(1))
        first = f", e.g. {min(names)}" if names else ""
        return f"none of its {len(names)} target modules is in the model{first}"
    return one_line(f"{type(exc).__name__}: {text}")


def _layers(key: str) -> int:
    """How many keys a report key such as `layers.{0, 1}.q_proj` stands for."""
    count = 1
    for group in re.findall(r"\{([^}]*)\}", key):
        count *= len(group.split(","))
    return count
