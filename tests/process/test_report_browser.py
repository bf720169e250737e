"""report.html opened in headless Chromium (playwright drives the system's browser): every
image loads, nothing leaves the machine, no script runs; once on a recorded run, once on a
real image compare."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from recorded import record

import runner

SCREENSHOT = Path("/tmp/report-screenshot.png")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("report") / "runs")


# --- in a real browser ------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine: install it (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (no browser download)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def open_in_browser(browser: Any, page_file: Path, screenshot: Path) -> dict[str, Any]:
    """Open PAGE_FILE as a person would, scroll through it, and say what the browser did."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []

    def only_local(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_file.resolve().as_uri())
    # the difference pictures sit in closed <details>: open them, so that every image shows
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true })")
    for image in page.query_selector_all("img"):  # thumbnails load lazily, as they scroll in
        image.scroll_into_view_if_needed()
    # polled from here: the page's CSP forbids the eval that wait_for_function would need
    deadline = time.monotonic() + 15
    while not page.evaluate("() => [...document.images].every(i => i.complete)"):
        assert time.monotonic() < deadline, "the page's images did not finish loading"
        page.wait_for_timeout(100)
    found = page.evaluate(
        """() => ({
            images: [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]),
            grids: [...document.querySelectorAll('table.grid')].map(t => ({
                rows: [...t.tBodies[0].rows].map(r => r.cells[0].textContent),
                columns: t.tHead.rows[0].cells.length - 1,
                cells: [...t.tBodies[0].rows].map(r => r.cells.length - 1),
            })),
            scripts: document.scripts.length,
        })"""
    )
    page.screenshot(path=str(screenshot), full_page=True)
    context.close()
    return {**found, "requests": requests, "errors": errors}


def test_the_page_in_headless_chromium(run_dir: Path, browser: Any, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    seen = open_in_browser(browser, run_dir / "report.html", shot)
    assert seen["images"] and all(width > 0 for _, width in seen["images"]), seen["images"]
    assert len(seen["images"]) == 6
    assert seen["requests"] and all(u.startswith("file://") for u in seen["requests"])
    assert seen["scripts"] == 0 and seen["errors"] == []
    assert seen["grids"] == [{"rows": ["base", "a"], "columns": 2, "cells": [2, 2]}]
    assert shot.stat().st_size > 10_000


def test_a_real_image_compare_page_in_headless_chromium(browser: Any, tmp_path: Path) -> None:
    text = """\
version: 1
name: report-compare
description: A compare of two tiny LoRAs, as the report page shows it.
seed: 0
device: cpu
model: {family: diffusers, path: builtin:tiny-sd}
adapters:
  a: {path: builtin:tiny-sd-lora-a}
  b: {path: builtin:tiny-sd-lora-b}
defaults:
  generate: {num_inference_steps: 2}
steps:
  - op: load
    adapters: [a, b]
  - op: compare
    id: styles
    adapters: [base, a, {a: 0.5, b: 0.5}, {b: [0.5, 1.0]}]
    prompt: ["a red cube on a table", "a cabin in the snow under the northern lights, with a dog, a sled and mountains far behind"]
    seed: [0, 1]
  - op: generate
    prompt: a red cube on a table
"""
    spec = tmp_path / "report-compare.yaml"
    spec.write_text(text)
    run = runner.run(spec, out=tmp_path / "runs")
    shot = tmp_path / "report.png"
    seen = open_in_browser(browser, run.dir / "report.html", shot)
    # 5 rows x 4 cells, the grid, and a difference picture for each of the 4 non-base rows' cells
    assert len(seen["images"]) == 5 * 4 + 1 + 4 * 4 and all(w > 0 for _, w in seen["images"])
    assert all(u.startswith("file://") for u in seen["requests"])
    assert seen["grids"] == [
        {"rows": ["base", "a", "a=0.5, b=0.5", "b=0.5", "b=1"], "columns": 4, "cells": [4] * 5}
    ]
    shutil.copyfile(shot, SCREENSHOT)  # for a person to look at
    shutil.copyfile(run.dir / "outputs/02-styles/grid.png", SCREENSHOT.with_name("report-grid.png"))
    os.chmod(SCREENSHOT, 0o644)
