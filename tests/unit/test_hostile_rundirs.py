"""Run directories made by an attacker: verify, report, diff and open_run answer within
seconds with one line naming the path, read nothing through a link and write nothing outside.

Fast tier: the run directories are written by the runner's own recorder, no model loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

import runner
from runner.cli import main
from runner.errors import RunDirError, SourceError
from runner.record import manifest as m
from runner.record.identity import tracked_files
from runner.record.recorder import Recorder
from runner.record.trust import UnsafePath, run_file
from runner.running.ending import finish
from runner.sources import folders

T = TypeVar("T")
LIMIT_S = 5.0

SPEC = """\
version: 1
name: hostile
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
steps:
  - {op: generate, id: base, prompt: [the cat]}
  - {op: generate, id: more, prompt: [a dog]}
"""


def within(seconds: float, call: Callable[[], T]) -> T:
    """CALL's result, failing the test when it takes longer than SECONDS (a hang)."""
    pool = ThreadPoolExecutor(1)
    started = time.monotonic()
    try:
        result = pool.submit(call).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)
    assert time.monotonic() - started < seconds
    return result


def made_run(out: Path) -> Path:
    """A finished run directory as the recorder writes it, with two text outputs."""
    spec_file = out / "hostile.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(SPEC)
    rec = Recorder.start(out / "runs", runner.load_spec(spec_file))
    for index, (step_id, prompt) in enumerate([("base", "the cat"), ("more", "a dog")], 1):
        line = {"prompt": prompt, "text": " sat", "token_ids": [1, 2], "seed": 0}
        written = rec.write(
            f"outputs/{index:02d}-{step_id}/completions.jsonl",
            (json.dumps({**line, "adapters": None}) + "\n").encode(),
        )
        rec.step(
            m.StepRecord(index, "generate", 5 + index, "ok", 0.1, id=step_id, outputs=[written])
        )
    finish(rec, "succeeded")
    return rec.run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_run(tmp_path_factory.mktemp("pristine"))


@pytest.fixture()
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / pristine.name
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


OUTPUT = "outputs/01-base/completions.jsonl"


def rewrite_manifest(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads((run / m.MANIFEST).read_text())
    change(data)
    (run / m.MANIFEST).write_text(json.dumps(data))


def test_the_rule_takes_only_regular_files_reached_without_a_link(run: Path) -> None:
    assert run_file(run, OUTPUT) == run / OUTPUT
    (run / "outputs/link").symlink_to(run / "outputs/01-base")
    (run / "outputs/zero").symlink_to("/dev/zero")
    os.mkfifo(run / "outputs/fifo")
    refused = {
        "../x": "outside the run directory",
        "outputs/01-base/../../x": "outside the run directory",
        "/etc/passwd": "absolute",
        "outputs//x": "not a plain relative path",
        "outputs/link/completions.jsonl": "passes a symlink",
        "outputs/zero": "is a symlink",
        "outputs/fifo": "is a FIFO",
        "outputs/01-base": "is a folder",
        "outputs/nothing": "is missing",
        f"{OUTPUT}/x": "not a folder",
    }
    for rel, why in refused.items():
        with pytest.raises(UnsafePath, match=why) as caught:
            run_file(run, rel)
        assert caught.value.missing == (why == "is missing")
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("swap", ["fifo", "zero", "outside"])
def test_verify_refuses_an_output_that_is_no_regular_file_within_seconds(
    run: Path, tmp_path: Path, swap: str
) -> None:
    original = (run / OUTPUT).read_bytes()
    (run / OUTPUT).unlink()
    if swap == "fifo":
        os.mkfifo(run / OUTPUT)
    elif swap == "zero":
        (run / OUTPUT).symlink_to("/dev/zero")
    else:  # the very bytes it should hold, in a file outside the run
        (tmp_path / "elsewhere").write_bytes(original)
        (run / OUTPUT).symlink_to(tmp_path / "elsewhere")
    report = within(LIMIT_S, lambda: runner.verify(run))
    assert not report.ok
    assert OUTPUT in report.refused and OUTPUT not in report.changed
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runner", "verify", str(run)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert f"refused: {OUTPUT}:" in done.stdout


def test_verify_of_an_unfinished_run_refuses_a_fifo_within_seconds(run: Path) -> None:
    (run / "SHA256SUMS").unlink()
    rewrite_manifest(run, lambda data: data.update(status="running", steps=[]))
    steps = [
        m.StepRecord(1, "generate", 6, "ok", 0.1, id="base", outputs=[m.Output(OUTPUT, "0" * 64)])
    ]
    (run / m.JOURNAL).write_bytes(b"".join(m.journal_line(s) for s in steps))
    (run / OUTPUT).unlink()
    os.mkfifo(run / OUTPUT)
    report = within(LIMIT_S, lambda: runner.verify(run))
    assert report.unfinished and OUTPUT in report.refused


@pytest.mark.parametrize("record", [m.MANIFEST, "SHA256SUMS", m.JOURNAL])
def test_a_record_that_is_a_fifo_or_dev_zero_is_one_line_within_seconds(
    run: Path, record: str
) -> None:
    if record == m.JOURNAL:
        rewrite_manifest(run, lambda data: data.update(status="running"))
    (run / record).unlink(missing_ok=True)
    (run / record).symlink_to("/dev/zero")
    with pytest.raises(RunDirError, match=f"'{record}' is a symlink"):
        within(LIMIT_S, lambda: runner.verify(run) if record == "SHA256SUMS" else m.read(run))
    (run / record).unlink()
    os.mkfifo(run / record)
    with pytest.raises(RunDirError, match=f"'{record}' is a FIFO"):
        within(LIMIT_S, lambda: runner.verify(run) if record == "SHA256SUMS" else m.read(run))


def test_a_record_past_its_size_limit_is_refused_saying_so(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(m, "MANIFEST_LIMIT", 100)
    with pytest.raises(RunDirError, match="manifest.json' is larger than"):
        m.read(run)


def test_verify_escapes_file_names_so_none_forges_an_intact_line(run: Path) -> None:
    forged = f"x\n{run}: intact (9 files)"
    (run / "outputs" / forged.replace("/", "_")).write_text("")
    result = CliRunner().invoke(main, ["verify", str(run)])
    lines = result.stdout.splitlines()
    assert result.exit_code == 1
    assert lines[0] == f"{run}: NOT intact"
    assert len(lines) == 2
    assert not any(line.startswith(f"{run}: intact") for line in lines)


def test_open_run_report_and_diff_refuse_outputs_through_a_link(run: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text(
        json.dumps(
            {"prompt": "SECRET", "text": "SECRET", "token_ids": [], "seed": 0, "adapters": None}
        )
        + "\n"
    )
    (run / OUTPUT).unlink()
    (run / OUTPUT).symlink_to(secret)
    with pytest.raises(RunDirError, match="is a symlink"):
        runner.open_run(run).outputs  # noqa: B018 - the property reads the files
    page = within(LIMIT_S, lambda: runner.write_report(run, tmp_path / "page.html")).read_text()
    assert "SECRET" not in page and "could not be read" in page
    report = within(LIMIT_S, lambda: runner.diff(run, run))
    assert any(d.path == OUTPUT and d.status != "same" for d in report.outputs)
    assert "SECRET" not in report.format_text()


def test_out_inside_a_run_directory_is_refused_in_one_line(run: Path, tmp_path: Path) -> None:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(SPEC)
    for out in (run, run / "outputs" / "deeper"):
        with pytest.raises(RunDirError, match="is inside the run directory") as caught:
            Recorder.start(out, runner.load_spec(spec))
        assert str(run) in str(caught.value) and "\n" not in str(caught.value)
    assert not (run / "outputs" / "deeper").exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("hostile-")) == []
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(run / "outputs")])
    assert result.exit_code == 2
    assert "is inside the run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_adapter_folder_records_nothing_its_links_reach_outside(tmp_path: Path) -> None:
    lora = tmp_path / "lora"
    (lora / "inner").mkdir(parents=True)
    (lora / "adapter_model.safetensors").write_bytes(b"weights")
    (lora / "inner" / "w.safetensors").write_bytes(b"w")
    (lora / "again.safetensors").symlink_to("inner/w.safetensors")  # stays inside: counts
    (lora / "etc").symlink_to("/etc")
    (tmp_path / "outside.json").write_text("{}")
    (lora / "stolen.json").symlink_to(tmp_path / "outside.json")
    found = tracked_files(lora)
    assert sorted(found) == [
        "adapter_model.safetensors",
        "again.safetensors",
        "inner/w.safetensors",
    ]


def test_a_hub_snapshot_links_into_its_own_blobs_only(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--lora"
    snapshot = repo / "snapshots" / ("a" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "blobs" / "f00d").write_bytes(b"weights")
    (snapshot / "pytorch_lora_weights.safetensors").symlink_to("../../blobs/f00d")
    other = tmp_path / "hub" / "models--org--other" / "blobs"
    other.mkdir(parents=True)
    (other / "beef").write_bytes(b"not this repo's")
    (snapshot / "other.safetensors").symlink_to(other / "beef")
    assert sorted(tracked_files(snapshot)) == ["pytorch_lora_weights.safetensors"]
    assert folders.lora_file(snapshot, None).name == "pytorch_lora_weights.safetensors"
    with pytest.raises(SourceError, match="leads out of its folder"):
        folders.lora_file(snapshot, "other.safetensors")
