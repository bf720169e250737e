"""One bar for a whole compare step: cells done of total with the row now run, the calls'
own counts inside it, never a bar that restarts with each call."""

from __future__ import annotations

import io
from dataclasses import dataclass

from runner.running.announce import CellCounter
from runner.running.progress import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0  # every redraw is due
        return self.now


@dataclass
class Row:
    label: str


@dataclass
class PlannedCell:
    row: Row


def test_a_compare_draws_one_bar_over_its_cells_naming_the_row() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=True, clock=Clock())
    cells = [
        PlannedCell(Row("base")),
        PlannedCell(Row("base")),
        PlannedCell(Row("a=0.5")),
        PlannedCell(Row("a=0.5")),
    ]
    counted = CellCounter(reporter, cells)
    for cell in cells:
        for step in (1, 2):  # a call of two denoising steps per cell
            reporter.tick(step, 2, "denoising steps")
        counted(cell)
    frames = [f.strip() for f in out.getvalue().split("\r") if f.strip()]
    assert frames[0].startswith("[........................] 0/4 cells (row base)")
    seen = "\n".join(frames)
    assert "[######..................] 1/4 cells (row base) · 1/2 denoising steps" in seen
    assert "[############............] 2/4 cells (row a=0.5) · 2/2 denoising steps" in seen
    # the bar never goes back: the step's count only grows
    counts = [int(f.split("] ")[1].split("/")[0]) for f in frames]
    assert counts == sorted(counts) and counts[-1] == 3
    reporter.tick(1, 5, "tokens")  # after the step: a call's own bar again
    assert out.getvalue().rsplit("\r", 1)[-1].strip().startswith("[####")
    assert "1/5 tokens" in out.getvalue().rsplit("\r", 1)[-1]


def test_off_a_terminal_the_step_count_shows_in_the_plain_lines() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=False, every=0.5, clock=Clock())
    cells = [PlannedCell(Row("base")), PlannedCell(Row("b"))]
    counted = CellCounter(reporter, cells)
    reporter.tick(1, 3, "tokens")
    counted(cells[0])
    reporter.tick(1, 3, "tokens")
    counted.stop()
    lines = out.getvalue().splitlines()
    assert "    1/2 cells (row b) · 1/3 tokens" in lines, lines


def test_a_ticker_without_a_step_bar_is_left_alone() -> None:
    counted = CellCounter(object(), [PlannedCell(Row("base"))])
    counted(PlannedCell(Row("base")))  # nothing to draw on, nothing raised
    counted.stop()
