"""The two commands of the README: `make demo` installs nothing outside .venv; the browser
belongs to `make test` alone; CI runs `make test`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_WIDE = ("apt-get", "apt ", "dpkg", "sudo", "brew", "snap ", "npm install -g")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def planned(target: str) -> str:
    """What `make TARGET` would run from scratch (-B: every prerequisite out of date)."""
    done = subprocess.run(
        ["make", "-B", "-n", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_demo_installs_nothing_system_wide() -> None:
    demo = planned("demo")
    assert "runner run specs/quickstart-text.yaml" in demo  # the plan is the demo's
    assert [word for word in SYSTEM_WIDE if word in demo] == [], demo


def test_make_demo_runs_every_quickstart() -> None:
    demo = planned("demo")
    shipped = sorted(p.name for p in (ROOT / "specs").glob("quickstart-*.yaml"))
    assert len(shipped) >= 5
    assert [name for name in shipped if f"runner run specs/{name} " not in demo] == []


def test_make_test_brings_the_browser_and_ci_runs_make_test() -> None:
    assert "apt-get install -y -qq chromium" in planned("test")
    assert (ROOT / ".ci" / "run").read_text().splitlines()[-1] == "make test"
