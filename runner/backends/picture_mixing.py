"""A compare's rows in one pipeline call: each image drawn by its own row's LoRA.

diffusers has no per-image adapters, so the LoRA layers of every component get them the way
`lora_mixing` gives them to a causal LM, by the batch size a layer sees: a text encoder
encodes each prompt (and its negative) once, one row per prompt; the UNet or transformer
sees one row per image, twice under classifier-free guidance (the unconditional half and
the conditional half, each image with its own adapter in both). A layer that sees any other
batch refuses (CannotMix), and the rows run one call each again. Each image still draws
its latents from its own CPU generator, so only batching's rounding changes its pixels.
"""

from __future__ import annotations

from typing import Any

import torch

from runner.backends import lora_mixing
from runner.backends.base import CannotMix
from runner.backends.quiet import one_line
from runner.errors import StepError
from runner.results import GeneratedImage
from runner.spec.arguments import ImageArguments
from runner.spec.types import Generate
from runner.spec.weights import Weight


class PictureMixing:
    """The MixesPictures capability of the diffusers backend, which inherits it."""

    pipe: Any
    generate_cells: Any  # DiffusersBackend.generate_cells
    merged: dict[str, lora_mixing.Merged] | None = None  # a compare step's merged rows
    parts: dict[str, tuple[Any, list[Any]]] | None = None  # component: (module, LoRA layers)

    def mix(self, weights: dict[str, Weight] | None) -> tuple[str, float] | None:
        """The adapter that runs WEIGHTS as one image's row of a mixed call, and its scale:
        the adapter itself, or a temporary cat-merged one for several; None where peft
        cannot mix it (DoRA, merged layers, several adapters on other than nn.Linear) or a
        weight is more than one number (per component, per block, a step range)."""
        if weights is None:
            return lora_mixing.BASE, 1.0
        if not all(isinstance(w, (int, float)) for w in weights.values()):
            return None
        scales = {name: float(w) for name, w in weights.items() if isinstance(w, (int, float))}
        names = list(scales)
        if any(n == lora_mixing.BASE or n.startswith(lora_mixing.TEMPORARY) for n in names):
            return None  # an adapter that bears a name with a meaning in a mixed batch
        for module, layers in self._parts().values():
            configs = getattr(module, "peft_config", None) or {}
            own = [n for n in names if n in configs]
            if own and not lora_mixing.plain(module, layers, own):
                return None
        if len(names) == 1:
            return names[0], scales[names[0]]
        layers = self._layers()
        if not lora_mixing.mergeable(layers, names):
            return None
        merged = self.merged = self.merged or {}
        name = f"{lora_mixing.TEMPORARY}{len(merged)}"
        merged[name] = lora_mixing.merge(layers, scales)
        return name, 1.0

    def unmix(self) -> None:
        """Drop the merged rows `mix` made (they never entered the pipeline)."""
        self.merged = self.parts = None

    def _parts(self) -> dict[str, tuple[Any, list[Any]]]:
        if self.parts is None:
            modules = {
                part: module
                for part, module in self.pipe.components.items()
                if isinstance(module, torch.nn.Module)
            }
            self.parts = {
                part: (module, layers)
                for part, module in modules.items()
                if (layers := lora_mixing.lora_layers(module))
            }
        return self.parts

    def _layers(self) -> list[Any]:
        return [layer for _, layers in self._parts().values() for layer in layers]

    def draw_mixed(
        self, step: Generate, seeds: list[int], names: list[str], scales: dict[str, float]
    ) -> list[GeneratedImage]:
        """`generate_cells` with prompt i drawn by adapter NAMES[i], each adapter at its
        scale in SCALES; raises CannotMix where the pipeline refuses."""
        if isinstance(step.args, ImageArguments) and step.args.lora_scale is not None:
            # the pipeline rescales every layer inside the call
            raise CannotMix("lora_scale rescales the LoRA layers within the call")
        layers = self._layers()
        merged = self.merged or {}
        lora_mixing.set_scales(layers, {n: w for n, w in scales.items() if n not in merged})
        if any(layer.disable_adapters for layer in layers):
            self.pipe.enable_lora()
        per_prompt = step.args.per_prompt
        images = [name for name in names for _ in range(per_prompt)]
        sizes = {len(names): names, len(images): images, 2 * len(images): images + images}
        try:
            with lora_mixing.adapter_names(layers, sizes, merged):
                pictures: list[GeneratedImage] = self.generate_cells(step, seeds)
                return pictures
        except (ValueError, StepError) as error:  # "Length of `adapter_names` should be..."
            if "adapter_names" not in str(error):
                raise
            raise CannotMix(one_line(str(error))) from error
