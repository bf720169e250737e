"""A report page written outside its run directory (`runner report RUN --out FILE`) opened
in headless Chromium: every image loads from where the page lies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recorded import record
from test_report_browser import browser, open_in_browser  # noqa: F401  (the fixture)

import runner


def test_a_page_written_elsewhere_shows_every_image(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    run_dir = record(tmp_path / "runs")
    out = tmp_path / "pages" / "of the run" / "page.html"
    out.parent.mkdir(parents=True)
    runner.write_report(run_dir, out)
    seen = open_in_browser(browser, out, tmp_path / "shot.png")
    assert len(seen["images"]) == 6 and all(width > 0 for _, width in seen["images"])
    assert all(u.startswith("file://") for u in seen["requests"])
