"""The banner of an interrupted run says so once, with where it stopped."""

from __future__ import annotations

import re
from pathlib import Path

from recorded import record


def test_the_interrupted_banner_says_interrupted_once(tmp_path: Path) -> None:
    run_dir = record(tmp_path / "runs", "interrupted")
    html = (run_dir / "report.html").read_text()
    banner = re.search(r"<header>.*?</header>", html, flags=re.S)
    assert banner is not None
    why = re.findall(r"<p class=why>(.*?)</p>", banner.group(), flags=re.S)
    assert why == ["stopped by an interrupt at step 4: spec.yaml:14: step 4 (generate)"]


def test_ran_with_reads_cleanly_where_the_record_is_older(tmp_path: Path) -> None:
    # The recorded fixture has no execution.seed_from nor settings (as runs made before).
    run_dir = record(tmp_path / "runs")
    html = (run_dir / "report.html").read_text()
    assert "ran with: seed <code>4</code> (image k of the step draws from seed + k)" in html
    assert "(;" not in html and "ran with: </p>" not in html
