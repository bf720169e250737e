"""The runner as tests call it: its command line, in this process through click's CliRunner
or, where a signal or the installed entry point is what is tested, as the real program; and
the spec files the tests of more than one tier write for it."""

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


# The head of a spec on the builtin tiny causal LM and its two LoRAs, for steps to follow.
TEXT_HEAD = """\
version: 1
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  b: {path: builtin:tiny-causal-lm-lora-b}
"""


def spec_file(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    """TEXT written to FOLDER/NAME."""
    file = folder / name
    file.write_text(text)
    return file
