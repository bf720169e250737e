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
