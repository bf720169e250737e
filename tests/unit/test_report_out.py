"""`runner report RUN --out FILE` outside the run directory: the page's images still load
from where the page lies, or the page is refused with the reason."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urljoin

import pytest
from click.testing import CliRunner
from recorded import record
from test_report import parse

from runner.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("out") / "deep" / "runs")


def _resolved(page_file: Path) -> list[Path]:
    """Every image and link of PAGE_FILE as the file a browser would open."""
    page = parse(page_file)
    base = [a.get("href") or "" for t, a in page.tags if t == "base"]
    here = page_file.absolute().as_uri()
    start = urljoin(here, base[0]) if base else here
    urls = [a.get(k) or "" for t, a in page.tags for k in ("src", "href") if t in ("img", "a")]
    urls = [u for u in urls if u and not u.startswith("#") and a_file(u)]
    return [Path(unquote(urljoin(start, u).removeprefix("file://"))) for u in urls]


def a_file(url: str) -> bool:
    return not re.match(r"[a-z]+:", url)


@pytest.mark.parametrize("where", ["elsewhere/page.html", "a b/c/page.html", "page.html"])
def test_a_page_written_elsewhere_reaches_every_image(
    run_dir: Path, tmp_path: Path, where: str
) -> None:
    out = tmp_path / where
    out.parent.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = _resolved(out)
    assert len([f for f in files if f.suffix == ".png"]) >= 6
    assert all(f.is_file() and f.is_relative_to(run_dir) for f in files), files


def test_a_relative_out_from_another_working_folder(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "w").mkdir()
    monkeypatch.chdir(tmp_path / "w")
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", "../page.html"])
    assert result.exit_code == 0, result.output
    files = _resolved(tmp_path / "page.html")
    assert files and all(f.is_file() for f in files)


def test_the_page_in_the_run_has_no_base(run_dir: Path) -> None:
    assert not [t for t, _ in parse(run_dir / "report.html").tags if t == "base"]
    assert all(f.is_file() for f in _resolved(run_dir / "report.html"))


def test_a_page_no_relative_path_reaches_is_refused(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_drive(path: str, start: str | None = None) -> str:  # as ntpath says it
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(os.path, "relpath", other_drive)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 1
    assert "cannot be reached by a relative path" in result.output
    assert "same drive" in result.output and not out.exists()
