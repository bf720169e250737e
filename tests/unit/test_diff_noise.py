"""`runner diff`: environment differences that cannot change outputs (HF_HUB_OFFLINE, the
runner's git commit, ...) are reported but do not make two runs differ; the others do."""

from __future__ import annotations

import json
from pathlib import Path

from commands import invoke
from recorded import record

import runner


def _edit(run_dir: Path, **changes: object) -> None:
    file = run_dir / "manifest.json"
    manifest = json.loads(file.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = manifest
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    file.write_text(json.dumps(manifest))


def test_noise_alone_is_reported_but_the_runs_are_the_same(tmp_path: Path) -> None:
    a, b = record(tmp_path / "a"), record(tmp_path / "b")
    _edit(a, environment__env__HF_HUB_OFFLINE=None, runner__git_commit="1" * 40)
    _edit(b, environment__env__HF_HUB_OFFLINE="1", runner__git_commit="2" * 40)
    report = runner.diff(a, b)
    assert report.same and report.environment == []
    assert report.noise == [
        "HF_HUB_OFFLINE unset -> 1",
        f"runner git_commit {'1' * 12}… -> {'2' * 12}…",
    ]
    code, out, err = invoke("diff", str(a), str(b))
    assert code == 0, out + err
    assert "environment: same\n  not counted (cannot change outputs):\n    HF_HUB_OFFLINE" in out
    assert out.rstrip().endswith("runs are the same")
    code, out, err = invoke("diff", str(a), str(b), "--json")
    assert code == 0 and json.loads(out)["same"] is True
    assert json.loads(out)["noise"] == report.noise


def test_an_environment_difference_that_can_change_outputs_still_counts(tmp_path: Path) -> None:
    a, b = record(tmp_path / "a"), record(tmp_path / "b")
    _edit(b, environment__env__NVIDIA_TF32_OVERRIDE="0", environment__libraries__torch="9.9")
    report = runner.diff(a, b)
    assert not report.same
    assert "NVIDIA_TF32_OVERRIDE unset -> 0" in report.environment
    assert "torch 2.13.0 -> 9.9" in report.environment
    code, out, err = invoke("diff", str(a), str(b))
    assert code == 1 and out.rstrip().endswith("runs differ")
