"""Progress for `runner.run` called from Python: in a notebook by default, anywhere with
`progress=True`. tqdm's notebook-aware bar (`tqdm.auto`) where tqdm is installed, a line
per step beside it; without tqdm, the CLI's own display on stderr."""

from __future__ import annotations

import sys
from typing import Any

from runner.running.progress import Reporter


def in_notebook() -> bool:
    """Running in a Jupyter (or Colab) kernel, where nothing on stderr would say the run
    is alive unless the runner shows it."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return shell is not None and hasattr(shell, "kernel")


def display() -> Any:
    """The progress display: a `Bars` where tqdm is installed, else the CLI's `Reporter`."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return Reporter(sys.stderr, live=False)
    return Bars(tqdm)


class Bars:
    """A ticker over tqdm: one bar per long call (or per compare step, `within`), lines by
    `tqdm.write` so that they land above the bar."""

    verbose = False

    def __init__(self, tqdm: Any) -> None:
        self.tqdm = tqdm
        self.bar: Any = None
        self.outer: tuple[int, int, str, str] | None = None

    def line(self, text: str) -> None:
        self._end()
        self.tqdm.write(text, file=sys.stderr)

    def note(self, text: str) -> None:
        self.tqdm.write(f"    note: {text}", file=sys.stderr)

    def within(self, done: int, total: int, unit: str, label: str = "") -> None:
        self.outer = (done, total, unit, label) if done < total else None
        self._show(done, total, unit, f"row {label}" if label else "")
        if self.outer is None:
            self._end()

    def tick(self, done: int, total: int | None, unit: str) -> None:
        if self.outer is not None:
            cells, of, what, label = self.outer
            inner = f"{done}/{total} {unit}" if total else f"{done} {unit}"
            self._show(cells, of, what, f"row {label} · {inner}" if label else inner)
            return
        self._show(done, total, unit, "")

    def close(self) -> None:
        self._end()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _show(self, done: int, total: int | None, unit: str, postfix: str) -> None:
        if self.bar is None or self.bar.total != total or done < self.bar.n:
            self._end()
            self.bar = self.tqdm(total=total, unit=f" {unit}", leave=False, file=sys.stderr)
        self.bar.n = done
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def _end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
