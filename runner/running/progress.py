"""The runner's own progress: a line per step and, within a long step, one progress bar.

On a terminal the bar is redrawn in place and wiped before the next line; elsewhere (a
log file, CI) a plain line now and then shows that a long step is alive without flooding
the log. No line is longer than LIMIT characters.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

LIMIT = 300  # characters of any line the runner writes
BAR = 24  # cells of the live bar
REDRAW = 0.1  # seconds between two redraws of the live bar


class Reporter:
    """Writes progress to STREAM; also the backends' ticker (`runner.backends.base.Ticker`).

    live: redraw one bar in place (default: when STREAM is a terminal). every: seconds
    between two plain progress lines when not live. verbose: the libraries print their own
    logs and bars, so the runner draws none.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        verbose: bool = False,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.verbose = verbose
        self.live = (stream.isatty() if live is None else live) and not verbose
        self.every = every
        self.clock = clock
        self._drawn = 0  # characters of the bar now on the terminal's last line
        self._last = clock()  # when the last line or redraw was written
        self._began: float | None = None  # when the current long call began
        self._outer: tuple[int, int, str, str] | None = None  # a whole step's count: within()

    def line(self, text: str) -> None:
        """A line of its own (the interpreter's progress callback)."""
        self._wipe()
        self.stream.write("".join(clip(part) + "\n" for part in text.splitlines() or [""]))
        self.stream.flush()
        self._last, self._began = self.clock(), None

    def note(self, text: str) -> None:
        """A library's warning, folded into one line."""
        self.line(f"    note: {text}")

    def within(self, done: int, total: int, unit: str, label: str = "") -> None:
        """DONE of TOTAL UNITs of a whole step are finished (a compare's cells), LABEL the
        part now worked on: one bar for the step, the calls' own counts shown inside it,
        instead of a bar that restarts with every call. DONE == TOTAL ends it."""
        if done <= 0 or self._outer is None:
            self._began = self.clock()
        self._outer = (done, total, unit, label) if done < total else None
        if self._outer is not None and not self.verbose:
            self.tick(0, None, "")

    def tick(self, done: int, total: int | None, unit: str) -> None:
        """DONE of TOTAL UNITs of a long call are finished."""
        if self.verbose:
            return
        now = self.clock()
        if self._outer is not None:  # a call within a step: the step's bar, its count inside
            done, total, unit = self._inner(done, total, unit)
            self._began = now if self._began is None else self._began
        elif self._began is None or done <= 1:
            self._began = now
        finished = total is not None and done >= total
        if self.live:
            if finished or now - self._last >= REDRAW:
                self._draw(done, total, unit, now - self._began)
        elif not finished and now - self._last >= self.every:
            self.stream.write(clip(f"    {_count(done, total)} {unit}") + "\n")
            self.stream.flush()
            self._last = now

    def _inner(self, done: int, total: int | None, unit: str) -> tuple[int, int, str]:
        assert self._outer is not None
        cells, of, what, label = self._outer
        inner = f" · {_count(done, total)} {unit}" if unit else ""
        return cells, of, f"{what}" + (f" (row {label})" if label else "") + inner

    def close(self) -> None:
        """Wipe the bar, if one is shown."""
        self._wipe()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _draw(self, done: int, total: int | None, unit: str, seconds: float) -> None:
        if total:
            filled = min(BAR, BAR * done // total)
            bar = f"[{'#' * filled}{'.' * (BAR - filled)}] "
        else:
            bar = ""
        width = min(LIMIT, shutil.get_terminal_size((80, 24)).columns - 1)
        text = clip(f"    {bar}{_count(done, total)} {unit}  {seconds:.1f}s", width)
        self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
        self.stream.flush()
        self._drawn, self._last = len(text), self.clock()

    def _wipe(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0


def clip(text: str, limit: int = LIMIT) -> str:
    """TEXT cut to LIMIT characters, with `...` where it was cut."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _count(done: int, total: int | None) -> str:
    return f"{done}/{total}" if total else str(done)
