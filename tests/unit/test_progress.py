"""The runner's own progress display: a line per step, one bar within a long step."""

from __future__ import annotations

import io
import re

import pytest

from runner.running.progress import LIMIT, Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def physical_lines(text: str) -> list[str]:
    """What a terminal shows as separate lines: \\r returns to the start of one."""
    return [part for line in text.split("\n") for part in line.split("\r")]


def test_plain_lines_are_cut_to_the_limit_and_split_at_newlines() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=False)
    reporter.line("x" * 1000)
    reporter.line("first\nsecond")
    reporter.note("diffusers said " + "y" * 500)
    lines = out.getvalue().split("\n")
    assert lines[0] == "x" * (LIMIT - 3) + "..."
    assert lines[1:3] == ["first", "second"]
    assert lines[3].startswith("    note: diffusers said yyy") and len(lines[3]) == LIMIT
    assert max(len(line) for line in lines) == LIMIT


def test_off_a_terminal_a_long_call_writes_a_plain_line_now_and_then() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = Reporter(out, live=False, every=10.0, clock=clock)
    reporter.line("step 1/2 load")
    for done in range(1, 31):
        clock.now += 1.0
        reporter.tick(done, 30, "denoising steps")
    reporter.line("step 2/2 generate")
    assert out.getvalue().split("\n") == [
        "step 1/2 load",
        "    10/30 denoising steps",
        "    20/30 denoising steps",
        "step 2/2 generate",  # the last tick writes nothing: the step's own line follows
        "",
    ]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_one_bar_is_redrawn_in_place_and_wiped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out, clock = io.StringIO(), Clock()
    reporter = Reporter(out, live=True, clock=clock)
    for done in range(1, 5):
        clock.now += 0.5
        reporter.tick(done, 4, "denoising steps")
    reporter.line("step 2/10 generate")
    text = out.getvalue()
    bars = re.findall(r"\r(    \[[#.]{24}\] \d/4 denoising steps  [0-9.]+s)", text)
    assert [bar.split("]")[0][5:].count("#") for bar in bars] == [6, 12, 18, 24]
    assert text.endswith("\r" + " " * len(bars[-1]) + "\rstep 2/10 generate\n")
    assert text.count("\n") == 1  # the bar never scrolls the terminal
    assert max(len(line) for line in physical_lines(text)) <= 59


def test_a_bar_is_cut_to_a_narrow_terminal_and_wiped_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    out = io.StringIO()
    with Reporter(out, live=True) as reporter:
        reporter.tick(3, 4, "denoising steps")
        reporter.tick(4, 4, "denoising steps")
    lines = physical_lines(out.getvalue())
    assert max(len(line) for line in lines) == 19
    assert lines[-1] == "" and lines[-2].strip() == ""  # wiped: nothing of the bar is left


def test_a_count_without_total_and_redraws_are_throttled() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = Reporter(out, live=True, clock=clock)
    for done in range(1, 101):
        clock.now += 0.001
        reporter.tick(done, None, "new tokens")
    drawn = re.findall(r"\r    (\d+) new tokens", out.getvalue())
    assert len(drawn) <= 2  # 0.1 s of ticks: not a redraw per token


def test_verbose_leaves_progress_to_the_libraries() -> None:
    out = io.StringIO()
    reporter = Reporter(out, live=True, verbose=True, every=0.0)
    assert not reporter.live
    reporter.tick(1, 4, "denoising steps")
    reporter.tick(2, 4, "denoising steps")
    assert out.getvalue() == ""


def test_live_by_default_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Reporter(Terminal()).live
    assert not Reporter(io.StringIO()).live
