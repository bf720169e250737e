"""Grid labels: cut to a bound before wrapping, so a huge prompt draws as fast as a short one."""

from __future__ import annotations

import base64
import time

import pytest

from runner.report import grid

MIB = 1 << 20
SIZE = 13
WIDTH = 152.0


def _fits(lines: list[str], width: float = WIDTH) -> bool:
    return all(grid.font(SIZE).getlength(line) <= width for line in lines)


@pytest.mark.parametrize(
    "prompt",
    [
        "x" * MIB,  # one word
        "日本語の長いプロンプト" * (MIB // 11),  # CJK: no spaces
        base64.b64encode(bytes(range(256)) * (MIB // 340)).decode(),  # base64: no spaces
        "word " * (MIB // 5),
        " " * MIB + "a cat",
    ],
    ids=["one-word", "cjk", "base64", "words", "spaces"],
)
def test_a_one_mebibyte_prompt_draws_in_well_under_a_second(prompt: str) -> None:
    started = time.perf_counter()
    drawn = grid.Grid((64, 64), ["base", prompt], [(prompt, 0), (prompt, 1)])
    lines = grid.wrap(prompt, WIDTH, SIZE, grid.PROMPT_LINES)
    seconds = time.perf_counter() - started
    assert seconds < 5  # generous: it takes well under 0.2 s; a 40,000-character word took 185 s
    assert drawn.image.width > 0
    assert len(lines) <= grid.PROMPT_LINES and _fits(lines)
    assert lines[-1].endswith("...")  # the cut says so


def test_a_long_word_is_cut_into_lines_that_fill_the_width() -> None:
    lines = grid.wrap("a" * 40_000, WIDTH, SIZE, 3)
    assert len(lines) == 3 and _fits(lines) and lines[-1].endswith("...")
    one = grid.font(SIZE).getlength("a")
    for line in lines[:2]:  # each cut line is as long as fits: one more character would not
        assert set(line) == {"a"} and grid.font(SIZE).getlength(line) + one > WIDTH


def test_a_label_past_the_bound_is_cut_with_an_ellipsis_even_when_lines_remain() -> None:
    text = "ab " * grid.MAX_LABEL  # 3 x MAX_LABEL characters, and room for all of them
    lines = grid.wrap(text, 2_000.0, SIZE, 1_000)
    assert lines[-1].endswith("...")
    assert sum(len(line) for line in lines) <= grid.MAX_LABEL + 3 * len(lines)


def test_normal_labels_are_wrapped_at_spaces_whole() -> None:
    prompt = "sushi rolls in the form of panda heads, sushi food photography"
    lines = grid.wrap(prompt, WIDTH, SIZE, 3)
    assert len(lines) > 1 and _fits(lines)
    assert " ".join(lines) == prompt  # nothing cut, nothing added
    assert grid.wrap("3d=0.7, cereal=0.5", 280.0, SIZE, 3) == ["3d=0.7, cereal=0.5"]
    assert grid.wrap("a  b\n\tc", WIDTH, SIZE, 3) == ["a b c"]
    # the fourth line of a prompt that needs more than three is cut, with the ellipsis
    cut = grid.wrap(" ".join([prompt] * 3), WIDTH, SIZE, 3)
    assert len(cut) == 3 and cut[-1].endswith("...") and _fits(cut)
