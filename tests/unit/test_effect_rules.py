"""The arithmetic of distance to base and the expectation checks, without a model: values
computed by hand here (numpy, Pillow), the no-op thresholds at their edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from runner.record import manifest as m
from runner.running import distance, expectations
from runner.spec.expect import Expect, PerPrompt


def test_token_distance_by_hand() -> None:
    assert distance.token_distance([1, 2, 3], [1, 2, 3]) == {
        "first_divergence": None,
        "same_tokens": 1.0,
    }
    assert distance.token_distance([1, 2, 3, 4], [1, 9, 3]) == {
        "first_divergence": 1,
        "same_tokens": 0.5,  # positions 0 and 2 of the longer length 4
    }
    assert distance.token_distance([1, 2], [1, 2, 7]) == {
        "first_divergence": 2,  # the shorter one ends where the longer goes on
        "same_tokens": pytest.approx(2 / 3),
    }
    assert distance.token_distance([], []) == {"first_divergence": None, "same_tokens": 1.0}


def test_mean_kl_is_kl_of_row_from_base_averaged_over_positions() -> None:
    row = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    base = np.log(np.array([[0.25, 0.75], [0.9, 0.1]]))
    first = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert distance.mean_kl(row, base) == pytest.approx(first / 2)
    assert distance.mean_kl(base, row) != pytest.approx(first / 2)  # the direction matters
    assert distance.mean_kl(base, base) == 0.0
    with pytest.raises(ValueError):
        distance.mean_kl(row, base[:1])


def test_image_distance_and_difference_picture() -> None:
    a = np.zeros((2, 3, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0] = (10, 0, 0)
    b[1, 2] = (0, 40, 20)
    found, picture = distance.image_distance(Image.fromarray(a), Image.fromarray(b))
    assert found == {"mean_abs": pytest.approx(70 / 18, abs=1e-6), "max_abs": 40}
    pixels = np.asarray(picture)
    assert pixels[1, 2].tolist() == [0, 255, 128] and pixels[0, 0].tolist() == [64, 0, 0]
    same, black = distance.image_distance(Image.fromarray(a), Image.fromarray(a))
    assert same == {"mean_abs": 0.0, "max_abs": 0} and not np.asarray(black).any()


def test_noop_thresholds() -> None:
    assert distance.equal({"mean_abs": 0.1, "max_abs": 1})
    assert not distance.equal({"mean_abs": 0.01, "max_abs": 2})
    text = {"first_divergence": None, "same_tokens": 1.0}
    assert distance.equal({**text, "kl": 9e-7})
    assert not distance.equal({**text, "kl": 1e-6})
    assert not distance.equal({"first_divergence": 3, "same_tokens": 0.9, "kl": 0.0})
    row = distance.summary("a", [{**text, "kl": 0.0}, {**text, "kl": 0.5}])
    assert (row.noop, row.mean_distance) == (False, 0.25)


def _cells(texts: list[tuple[str, int, str]]) -> list[expectations.Checked]:
    return [expectations.Checked(row, p, f"p{p}", 0, text) for row, p, text in texts]


def test_text_expectations_per_prompt_and_capped_failures() -> None:
    made = _cells([("a", 0, "ahoy there"), ("a", 1, "the sea"), ("base", 0, "hello")])
    made[-1] = expectations.Checked("base", 0, "p0", 0, "hello", base=True)
    expect = Expect(
        texts=(
            ("contains", PerPrompt.written(["ahoy", "sea"])),
            ("regex", PerPrompt.written(r"^\w+ \w+$")),
            ("not_contains", PerPrompt.written("the")),
            ("equals", PerPrompt.written(["ahoy there", "x"])),
        )
    )
    results = {r.name: r for r in expectations.check(expect, made, None)}
    assert results["contains"].passed  # the base cell, lacking both, is not checked
    assert results["regex"].passed
    assert not results["not_contains"].passed and results["not_contains"].failing_count == 2
    assert [f.prompt for f in results["equals"].failing] == ["p1"]
    many = _cells([("a", 0, "x")] * 25)
    (capped,) = expectations.check(
        Expect(texts=(("contains", PerPrompt.written("y")),)), many, None
    )
    assert capped.failing_count == 25 and len(capped.failing) == m.FAILED_CELLS_KEPT


def test_distance_expectations() -> None:
    made = [
        expectations.Checked("a", 0, "p", 0, distance={"mean_abs": 3.0, "max_abs": 9}),
        expectations.Checked("z", 0, "p", 0, distance={"mean_abs": 0.0, "max_abs": 0}),
    ]
    rows = [m.RowSummary("a", False, 3.0), m.RowSummary("z", True, 0.0)]
    differs, far = expectations.check(Expect(differs_from_base=True, min_distance=1.0), made, rows)
    assert [f.row for f in differs.failing] == ["z"] and not differs.passed
    assert [f.row for f in far.failing] == ["z"] and far.failing[0].detail == "mean_abs 0.0 < 1"
    (ok,) = expectations.check(Expect(min_distance=2.5), made[:1], rows[:1])
    assert ok.passed and ok.failing_count == 0
