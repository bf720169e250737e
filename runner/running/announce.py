"""What a run says before its first step: the model it loads, what that took, and each
builtin made on first use (library imports and loading take seconds, silent otherwise)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import runner.builtin as builtin


@contextlib.contextmanager
def announcing(progress: Callable[[str], None]) -> Iterator[None]:
    """Builtins made while the block runs are announced on PROGRESS."""
    token = builtin.ANNOUNCE.set(progress)
    try:
        yield
    finally:
        builtin.ANNOUNCE.reset(token)


def loaded_line(got: Any, seconds: float) -> str:
    """`    model loaded in 3.21s` (libraries imported too), or reused from an earlier run."""
    if got.reused_from is not None:
        return f"    model reused from {Path(got.reused_from).name} ({seconds:.2f}s)"
    return f"    model loaded in {seconds:.2f}s"


class CellCounter:
    """Counts a compare's finished cells on TICKER's one bar for the step (`within`, where
    the ticker draws one), naming the row of the next cell in the plan as the one now run."""

    def __init__(self, ticker: Any, cells: list[Any]) -> None:
        self.within = getattr(ticker, "within", None)
        self.cells, self.finished = cells, 0
        if self.within is not None and cells:
            self.within(0, len(cells), "cells", cells[0].row.label)

    def __call__(self, cell: Any) -> None:
        self.finished += 1
        if self.within is not None:
            following = self.cells[self.finished] if self.finished < len(self.cells) else None
            label = following.row.label if following is not None else ""
            self.within(self.finished, len(self.cells), "cells", label)

    def stop(self) -> None:
        """The step ended early: the bar for the step ends too."""
        if self.within is not None and self.cells:
            self.within(len(self.cells), len(self.cells), "cells")
