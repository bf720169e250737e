"""report.html: written at the end of every run, escaped, self-contained, drawn again by
`runner report` from the run directory alone.

The runs here are recorded through the Recorder with hand-made results (tests/recorded.py, no
model); the page in a real browser is tests/process/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from recorded import HOSTILE, record

import runner
from runner.cli import main


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
    again = (tmp_path / "again.html").read_text()
    # The same page, but for the <base> that points back at the run from where it lies.
    assert re.sub(r'<base href="[^"]*">\n', "", again, count=1) == page.read_text()
    runner.write_report(run_dir, run_dir / "again.html")
    assert (run_dir / "again.html").read_bytes() == page.read_bytes()
    (run_dir / "again.html").unlink()


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
    said = "stopped by an interrupt" if status == "interrupted" else status
    assert f"{said} at step 4: spec.yaml:14: step 4 (generate)" in text
    assert f"This step did not finish: {status}." in text
    if status == "failed":
        assert "RuntimeError: out of memory <b>" in text
    assert "report.html" in (run_dir / "SHA256SUMS").read_text()
    assert runner.verify(run_dir).ok


def test_runner_report_on_what_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a run directory" in result.stderr


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
