"""The runner's command line as tests call it: in this process through click's CliRunner,
or, where a signal or the installed entry point is what is tested, as the real program."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

# The entry point pip installed beside this interpreter (`runner = "runner.cli:entry"`).
EXE = Path(sys.executable).parent / "runner"


def invoke(*args: str) -> tuple[int, str, str]:
    """Run `runner ARGS` in this process: (exit code, stdout, stderr)."""
    from runner.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
