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

    def summary(self) -> str:
        return f"{self.prompt!r} -> {self.text!r}"


@dataclass(frozen=True)
class Picture:
    """One generated image and what made it."""

    image: Image
    prompt: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)  # negative_prompt, steps, size...

    def summary(self) -> str:
        return f"{self.prompt!r} seed {self.seed}"
