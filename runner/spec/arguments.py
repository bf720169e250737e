"""A generating step's family arguments (vocabulary.ARGUMENTS), typed: one frozen class per
family, built once from the checked document, `defaults.generate` merged.

Values stay as the spec wrote them (a guidance_scale written 7 stays the integer 7), a list
held as a tuple; `written()` gives the mapping back, only the keys the spec wrote or its
defaults gave, in their order, as the records write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class _Written:
    """What both families share: the keys as written, in order, and the mapping back."""

    order: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.order:  # built field by field: the fields given, in field order
            given = (f.name for f in fields(self) if f.name != "order")  # type: ignore[arg-type]
            object.__setattr__(
                self, "order", tuple(k for k in given if getattr(self, k) is not None)
            )

    def written(self) -> dict[str, Any]:
        """The mapping as written: plain JSON data, recorded as it is."""
        out = {k: getattr(self, k) for k in self.order}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True, kw_only=True)
class TextArguments(_Written):
    """transformers: what `model.generate` takes; None leaves the model's generation config."""

    max_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_beams: int | None = None
    repetition_penalty: float | None = None
    chat: bool | None = None  # the tokenizer's chat template around each prompt
    order: tuple[str, ...] = ()

    @property
    def per_prompt(self) -> int:
        """Outputs per prompt: one completion."""
        return 1


@dataclass(frozen=True, kw_only=True)
class ImageArguments(_Written):
    """diffusers: what the pipeline call takes; None leaves the pipeline's default."""

    negative_prompt: str | tuple[str, ...] | None = None  # a tuple: one per prompt
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    num_images_per_prompt: int | None = None
    lora_scale: float | None = None
    # This step's own scheduler, the mapping the spec wrote (Scheduler.from_written reads it).
    scheduler: dict[str, Any] | None = None
    order: tuple[str, ...] = ()

    @property
    def per_prompt(self) -> int:
        """Outputs per prompt: num_images_per_prompt images."""
        return self.num_images_per_prompt or 1


Arguments = TextArguments | ImageArguments

BY_FAMILY: dict[str, type[TextArguments] | type[ImageArguments]] = {
    "transformers": TextArguments,
    "diffusers": ImageArguments,
}


def of(family: str, written: Mapping[str, Any]) -> Arguments:
    """FAMILY's arguments from the mapping a checked spec writes (defaults merged)."""
    typed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in written.items()}
    return BY_FAMILY[family](**typed, order=tuple(written))
