"""What a backend makes: completions and pictures, plain data the recorder writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class Completion:
    """One prompt's generated text."""

    prompt: str
    text: str  # new text only, special tokens skipped
    token_ids: list[int]  # new tokens only
    seed: int

    def summary(self, file: str) -> str:
        """A line for the progress display; FILE is where it was written."""
        return f"{self.prompt!r} -> {self.text!r}"


@dataclass(frozen=True)
class SchedulerUsed:
    """A diffusers scheduler as it ran: its class and its config, as JSON-ready data."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSetup:
    """How the base model was loaded, besides its files: what the manifest records."""

    scheduler: SchedulerUsed | None = None  # diffusers: the model's scheduler
    components_left_out: tuple[str, ...] = ()  # diffusers: loaded as from_pretrained(name=None)
    attn_implementation: str | None = None  # transformers: the attention in use
    quantization: dict[str, Any] | None = None  # a quantized base, as the spec writes it


@dataclass(frozen=True)
class GeneratedImage:
    """One generated image and what made it."""

    image: Image
    prompt: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)  # negative_prompt, steps, size...
    scheduler: SchedulerUsed | None = None  # the scheduler that drew it

    def summary(self, file: str) -> str:
        """A line for the progress display; FILE is where it was written."""
        return f"{self.prompt!r} -> {file}"


@dataclass(frozen=True)
class Likelihood:
    """How likely a model finds a continuation given its context (lm-eval's loglikelihood)."""

    loglik: float  # the sum of the continuation tokens' log-probabilities
    tokens: int  # the continuation's tokens
    is_greedy: bool  # every continuation token is the model's most likely one
