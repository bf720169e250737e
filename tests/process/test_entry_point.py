"""The runner as a user starts it: the installed `runner` program and `python -m runner`, and
what a fresh interpreter imports for the commands that need no model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from commands import EXE
from recorded import record

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests" / "examples" / "invalid"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("report") / "runs")


def test_validate_imports_no_deep_learning_library() -> None:
    code = (
        "import sys\nfrom runner.cli import main\n"
        "try:\n    main(['validate', *sys.argv[1:]])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'peft') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, SPECS)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_installed_runner_is_a_real_process() -> None:
    bad = subprocess.run(
        [str(EXE), "validate", str(INVALID / "unknown-keys.yaml")], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stdout + bad.stderr
    assert (
        "unknown-keys.yaml:2:1: sead: unknown key 'sead' at the top level (did you mean 'seed'?)"
        in bad.stderr
    )
    assert bad.stdout == ""  # errors go to stderr, as for every command
    module = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(SPECS[0])], capture_output=True, text=True
    )
    assert (module.returncode, module.stdout) == (0, f"{SPECS[0]}: ok\n")


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
