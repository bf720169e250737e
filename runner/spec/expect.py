"""A step's `expect:` as a typed value (CONTRACT section 9): what a generate or compare step
is expected to make. runner.running.expectations checks it after the step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.spec.vocabulary import TEXT_EXPECTATIONS


@dataclass(frozen=True)
class PerPrompt:
    """A text expectation's value: one string for every prompt, or one per prompt."""

    values: tuple[str, ...]
    each: bool  # written as a list, or taken from data: values[i] is prompt i's
    data: tuple[str, str] | None = None  # taken from (data set, field): counted as accuracy

    def for_prompt(self, index: int) -> str:
        return self.values[index] if self.each else self.values[0]

    def shown(self) -> Any:
        """The value as the spec wrote it, for the record."""
        if self.data is not None:
            return {"data": self.data[0], "field": self.data[1]}
        return list(self.values) if self.each else self.values[0]

    @staticmethod
    def written(value: str | list[str] | PerPrompt) -> PerPrompt:
        if isinstance(value, PerPrompt):  # a data field's values (runner.spec.types)
            return value
        if isinstance(value, str):
            return PerPrompt((value,), each=False)
        return PerPrompt(tuple(value), each=True)


@dataclass(frozen=True)
class Expect:
    """What a step is expected to make; None or empty fields are not checked."""

    differs_from_base: bool = False
    min_distance: float | None = None
    texts: tuple[tuple[str, PerPrompt], ...] = ()  # (contains | not_contains | ..., value)
    line: int = 0


def build(raw: dict[str, Any] | None, line: int = 0) -> Expect | None:
    """The typed `expect:` of a validated step, or None where the step has none."""
    if not raw:
        return None
    minimum = raw.get("min_distance")
    return Expect(
        differs_from_base=bool(raw.get("differs_from_base", False)),
        min_distance=None if minimum is None else float(minimum),
        texts=tuple((k, PerPrompt.written(raw[k])) for k in TEXT_EXPECTATIONS if k in raw),
        line=line,
    )
