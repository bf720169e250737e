"""What `runner run` shows on stderr: its own progress only, in lines a terminal can hold."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from commands import EXE

from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "specs" / "quickstart-image.yaml"
# What the libraries print by themselves: tqdm bars, diffusers' and transformers' loading
# bars, the torchvision fallback notice, peft's and diffusers' key reports.
LIBRARY_TEXTS = re.compile(
    r"it/s\]|%\||Loading weights|Loading pipeline components|Writing model shards|"
    r"torchvision|missing keys|unexpected keys|LOAD REPORT|size mismatch|\[transformers\]"
)


def physical_lines(text: str) -> list[str]:
    """The lines a terminal shows: both \\n and \\r start one."""
    return [part for line in text.split("\n") for part in line.split("\r")]


def check(stderr: str) -> list[str]:
    lines = physical_lines(stderr)
    assert max(len(line) for line in lines) <= 300, max(lines, key=len)
    assert not LIBRARY_TEXTS.search(stderr), LIBRARY_TEXTS.search(stderr)
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{n}/10" for n in range(1, 11)]
    return lines


def test_the_image_quickstart_shows_only_the_runners_lines(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "run", str(QUICKSTART), "--out", str(tmp_path)],
        capture_output=True,  # bytes: text mode would turn a bar's \r into \n
        env=os.environ.copy(),
        timeout=600,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    lines = check(stderr)
    assert "\r" not in stderr  # no bar off a terminal
    alive = re.compile(r"    \d/4 denoising steps")  # at most every 10 s, on a slow machine
    # builtins made on first use are announced, each with its time (or waited for, while
    # another test worker makes them)
    made = re.compile(
        r"    making builtin:\S+ \(first use, kept in the cache\) \.\.\.|    made builtin:\S+ in .*s|"
        r"    waiting for another process making builtin:\S+ \.\.\."
    )
    lines = [line for line in lines if not made.fullmatch(line)]
    # the model's two lines, 10 step lines, 6 of outputs, a load report line per adapter
    assert len([line for line in lines if line and not alive.fullmatch(line)]) == 20
    assert lines[0] == "loading model builtin:tiny-sdxl (diffusers) ...", lines
    assert re.fullmatch(r"    model loaded in \d+\.\d\ds", lines[1]), lines[1]
    assert sum(line.startswith("    adapter kohya: 120 modules") for line in lines) == 1
    assert proc.stdout.decode().strip() == str(next(tmp_path.iterdir()))
    assert "    'a red cube on a table' -> outputs/04-kohya/1.png" in lines


def test_on_a_terminal_long_steps_get_one_live_bar(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [str(EXE), "run", str(QUICKSTART), "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=os.environ.copy(),
    )
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    stderr = seen.decode().replace("\r\n", "\n")  # the terminal turns \n into \r\n
    lines = check(stderr)
    bars = [line for line in lines if line.endswith("s") and "denoising steps" in line]
    assert any("[########################] 4/4 denoising steps" in bar for bar in bars), stderr
    # the terminal is 100 columns wide; a load report's line (CONTRACT 9) is not a bar and
    # may wrap
    assert max(len(line) for line in lines if not line.startswith("    adapter ")) < 100


def test_a_lora_of_another_base_is_one_line_naming_adapter_model_and_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = Path("wrong.yaml")
    spec.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: diffusers, path: 'builtin:tiny-sd'}\n"
        "adapters:\n  xl: {path: 'builtin:tiny-sdxl-lora-a'}\n"
        "steps:\n  - op: load\n    adapters: xl\n"
    )
    result = CliRunner().invoke(main, ["run", str(spec), "--out", "runs"])
    assert result.exit_code == 2
    loading, loaded, *_, error, kept = result.stderr.splitlines()
    assert loading == "loading model builtin:tiny-sd (diffusers) ..."
    assert loaded.startswith("    model loaded in ")
    assert re.fullmatch(
        r"error: wrong.yaml:7: step 1 \(load\): adapter 'xl': does not fit the model "
        r"builtin:tiny-sd: 8 weights have other shapes, e.g. \S+\.lora_A\.xl\.weight is "
        r"\(4, 64\) in the file but \(4, 32\) in the model",
        error,
    ), error
    assert len(error) <= 300 and kept.startswith("what finished is kept in ")
