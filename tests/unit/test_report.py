"""report.html: written at the end of every run, escaped, self-contained, drawn again by
`runner report` from the run directory alone, and opened in a real browser.

Most runs here are recorded through the Recorder with hand-made results (no model), so the
page is tested in the fast tier; one test opens the page of a real image compare.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

import runner
from runner.backends.results import Completion, Picture
from runner.cli import main
from runner.record import manifest as m
from runner.record.recorder import Recorder

HOSTILE = "<script>alert('x')</script> & \"quotes\" <img src=https://evil.example/x.png>"
SCREENSHOT = Path("/tmp/report-screenshot.png")

SPEC = {
    "version": 1,
    "name": "report-page",
    "description": "desc " + HOSTILE,
    "device": "cpu",
    "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
    "adapters": {"a": {"path": "builtin:tiny-sd-lora-a"}},
    "steps": [
        {"op": "load", "adapters": "a"},
        {"op": "generate", "id": "pics", "prompt": ["red", HOSTILE], "seed": 4},
        {"op": "compare", "id": "grid", "adapters": ["base", "a"], "prompt": ["red", HOSTILE]},
        {"op": "generate", "id": "words", "prompt": "x"},
    ],
}


def _image(seed: int, size: int = 48) -> Image.Image:
    import random

    rng = random.Random(seed)
    return Image.frombytes(
        "RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3))
    )


def _step(index: int, op: str, id_: str | None, **kwargs: Any) -> m.StepRecord:
    return m.StepRecord(
        index=index, op=op, id=id_, line=10 + index, status="ok", seconds=0.25, **kwargs
    )


def record(out: Path, status: str = "succeeded") -> Path:
    """A run directory as the runner writes it, from hand-made results (no model)."""
    spec = runner.load_spec(SPEC)
    rec = Recorder.start(out, spec)
    settings = m.Settings("cpu", "Test CPU", "float32", 0, 2, {"threads": 2})
    model = m.Identity("builtin:tiny-sd", files={"unet/model.safetensors": "ab" * 32})
    rec.prepared({"libraries": {"torch": "2.13.0"}, "python": "3.11"}, settings, model)
    rec.manifest.inputs.adapters["a"] = m.Identity(
        "builtin:tiny-sd-lora-a", revision="c" * 40, files={"lora.safetensors": "cd" * 32}
    )
    rec.step(_step(1, "load", None, arguments={"adapters": ["a"]}, active_adapters={"a": 1.0}))
    pictures = [Picture(_image(k), p, 4 + k) for k, p in enumerate(["red", HOSTILE])]
    outputs = rec.outputs("outputs/02-pics", pictures, {"a": 1.0})
    args = {"prompt": ["red", HOSTILE], "seed": 4}
    rec.step(
        _step(2, "generate", "pics", arguments=args, active_adapters={"a": 1.0}, outputs=outputs)
    )
    writer = rec.cell_writer("outputs/03-grid", ["base", "a"])
    for r, adapters in enumerate([None, {"a": 1.0}]):
        for k, prompt in enumerate(["red", HOSTILE]):
            writer.add(r, adapters, [Picture(_image(10 * r + k), prompt, 0)])
    written, cells = writer.close()
    args = {"rows": ["base", "a"], "adapters": [None, {"a": 1.0}], "prompt": ["red", HOSTILE]}
    execution = {"executor": "one_by_one", "cells": cells}
    rec.step(
        _step(3, "compare", "grid", arguments=args, active_adapters={"a": 1.0}, outputs=written)
    )
    rec.manifest.steps[-1].execution = execution
    if status == "succeeded":
        texts = [Completion(HOSTILE, " and " + HOSTILE, [5, 6, 7], 0)]
        outputs = rec.outputs("outputs/04-words", texts, None)
        rec.step(_step(4, "generate", "words", arguments={"prompt": ["x"]}, outputs=outputs))
        rec.finish("succeeded")
    else:
        rec.step(m.StepRecord(4, "generate", 14, status, 0.5, id="words"))
        why = "interrupted" if status == "interrupted" else "RuntimeError: out of memory <b>"
        rec.finish(status, m.Failure(4, "spec.yaml:14: step 4 (generate)", why))
    return rec.run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("report") / "runs")


class Page(HTMLParser):
    """What a browser would fetch or run from the page: scripts, sources, links, styles."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(file: Path) -> Page:
    page = Page()
    page.feed(file.read_text(encoding="utf-8"))
    return page


def test_report_is_written_listed_and_drawn_again_identically(
    run_dir: Path, tmp_path: Path
) -> None:
    page = run_dir / "report.html"
    sums = (run_dir / "SHA256SUMS").read_text()
    assert re.search(r"^[0-9a-f]{64}  report\.html$", sums, flags=re.M)
    assert runner.verify(run_dir).ok
    result = CliRunner().invoke(
        main,
        ["report", str(run_dir), "--out", str(tmp_path / "again.html")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0 and result.output.strip() == str(tmp_path / "again.html")
    assert (tmp_path / "again.html").read_bytes() == page.read_bytes()


def test_hostile_text_is_escaped_and_nothing_leaves_the_run(run_dir: Path) -> None:
    text = (run_dir / "report.html").read_text()
    assert HOSTILE not in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    page = parse(run_dir / "report.html")
    assert HOSTILE in "".join(page.text)  # shown as text, verbatim
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed", "link")]
    urls = [a[k] for t, a in page.tags for k in ("src", "href") if a.get(k) is not None]
    assert urls and all(not re.match(r"[a-z]+:|//", u or "") for u in urls)  # relative only
    assert all((run_dir / (u or "")).is_file() for u in urls)
    assert "style" not in [k for _, a in page.tags for k in a]  # CSS lives in one <style>
    policy = [a for t, a in page.tags if t == "meta" and a.get("http-equiv")]
    assert policy and "default-src 'none'" in (policy[0]["content"] or "")


def test_report_shows_the_header_and_every_step(run_dir: Path) -> None:
    page = parse(run_dir / "report.html")
    shown = " ".join(" ".join(page.text).split())
    for fact in (
        "report-page",
        "succeeded",
        "cpu (Test CPU)",
        "float32",
        "torch 2.13.0",
        "builtin:tiny-sd-lora-a",
        "c" * 12,  # the hub commit, short
        "abababababab",  # the model file's sha256, short
        "1 · load",
        "2 · generate",
        "3 · compare",
        "4 · generate",
    ):
        assert fact in shown, fact
    thumbs = [a["src"] for t, a in page.tags if t == "img"]
    assert thumbs == [f"outputs/02-pics/{k}.png" for k in range(2)] + [
        f"outputs/03-grid/{k}.png" for k in range(4)
    ]
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert "outputs/03-grid/grid.png" in links and set(thumbs) <= set(links)  # full size on click


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_failed_and_interrupted_runs_have_a_report_that_says_where_and_why(
    tmp_path: Path, status: str
) -> None:
    run_dir = record(tmp_path / "runs", status)
    text = " ".join(" ".join(parse(run_dir / "report.html").text).split())
    assert f"{status} at step 4: spec.yaml:14: step 4 (generate)" in text
    assert f"This step did not finish: {status}." in text
    if status == "failed":
        assert "RuntimeError: out of memory <b>" in text
    assert "report.html" in (run_dir / "SHA256SUMS").read_text()
    assert runner.verify(run_dir).ok


def test_runner_report_draws_an_older_run_without_a_model(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    (old / "report.html").unlink()  # a run made before report pages existed
    code = (
        "import sys\nfrom runner.cli import main\n"
        "try:\n    main(['report', sys.argv[1]])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print([m for m in ('torch', 'transformers', 'diffusers', 'peft') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(old)], capture_output=True, text=True)
    assert out.stdout.splitlines()[-2:] == ["exit 0", "[]"], out.stderr
    assert (old / "report.html").read_bytes() == (run_dir / "report.html").read_bytes()


def test_runner_report_on_what_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a run directory" in result.stderr


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
    for image in page.query_selector_all("img"):  # thumbnails load lazily, as they scroll in
        image.scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15000)
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


@pytest.mark.models
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
    assert len(seen["images"]) == 5 * 4 + 1 and all(w > 0 for _, w in seen["images"])
    assert all(u.startswith("file://") for u in seen["requests"])
    assert seen["grids"] == [
        {"rows": ["base", "a", "a=0.5, b=0.5", "b=0.5", "b=1"], "columns": 4, "cells": [4] * 5}
    ]
    shutil.copyfile(shot, SCREENSHOT)  # for a person to look at
    shutil.copyfile(run.dir / "outputs/02-styles/grid.png", SCREENSHOT.with_name("report-grid.png"))
    os.chmod(SCREENSHOT, 0o644)


def test_json_of_cells_is_what_the_page_reads(run_dir: Path) -> None:
    lines = (run_dir / "outputs/03-grid/cells.jsonl").read_text().splitlines()
    cells = [json.loads(x) for x in lines]
    assert [(c["row"], c["image"]) for c in cells] == [
        ("base", "0.png"),
        ("base", "1.png"),
        ("a", "2.png"),
        ("a", "3.png"),
    ]
    grid = runner.open_run(run_dir).cells("grid")
    assert [(c.row, c.prompt, c.file.name if c.file else None) for c in grid] == [
        ("base", "red", "0.png"),
        ("base", HOSTILE, "1.png"),
        ("a", "red", "2.png"),
        ("a", HOSTILE, "3.png"),
    ]
