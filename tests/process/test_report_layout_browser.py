"""How the report page draws in Chromium: thumbnails above their natural size are crisp
(pixelated), centred in their cells, and the grid's `adapters` header stays one word on
one line however narrow the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from recorded import record
from test_report_browser import browser  # noqa: F401  (the fixture)

import runner

MEASURE = """() => {
    const lines = el => { const r = document.createRange(); r.selectNodeContents(el);
                          return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; };
    const corner = document.querySelector('table.grid thead th');
    const tiles = [...document.querySelectorAll('table.grid td img')].map(img => {
        const a = img.getBoundingClientRect(), b = img.closest('td').getBoundingClientRect();
        return [a.left - b.left, b.right - a.right, getComputedStyle(img).imageRendering];
    });
    const figures = [...document.querySelectorAll('figure img')].map(
        img => getComputedStyle(img).imageRendering);
    return {corner: corner.textContent, lines: lines(corner), tiles, figures};
}"""


def _measure(browser: Any, page_file: Path, width: int) -> dict[str, Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(page_file.resolve().as_uri())
    for image in page.query_selector_all("img"):
        image.scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15000)
    seen = page.evaluate(MEASURE)
    context.close()
    return seen


def test_small_thumbnails_are_crisp_and_centred(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    run_dir = record(tmp_path / "runs")  # 48 px images, drawn 160 px wide
    for width in (1280, 360):
        seen = _measure(browser, run_dir / "report.html", width)
        assert seen["corner"] == "adapters" and seen["lines"] == 1, (width, seen)
        assert seen["tiles"] and all(r == "pixelated" for *_, r in seen["tiles"])
        assert all(abs(left - right) < 2 for left, right, _ in seen["tiles"]), seen["tiles"]
        assert seen["figures"] and all(r == "pixelated" for r in seen["figures"])


def test_large_images_are_scaled_smoothly(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    run_dir = record(tmp_path / "runs")
    for png in (run_dir / "outputs/02-pics").glob("*.png"):  # now wider than a thumbnail
        Image.new("RGB", (320, 320), "red").save(png)
    runner.write_report(run_dir)
    seen = _measure(browser, run_dir / "report.html", 1280)
    assert seen["figures"] and all(r == "auto" for r in seen["figures"])
    assert all(r == "pixelated" for *_, r in seen["tiles"])  # the grid's are still small
