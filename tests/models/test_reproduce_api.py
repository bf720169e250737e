"""runner.reproduce(): the API the CLI's `reproduce` calls, on a tiny builtin model."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner

pytestmark = pytest.mark.models

SPEC = {
    "version": 1,
    "name": "again",
    "seed": 5,
    "device": "cpu",
    "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
    "steps": [{"op": "generate", "id": "g", "prompt": "the cat", "max_new_tokens": 3}],
}


def test_reproduce_runs_again_under_the_recorded_settings_and_compares(tmp_path: Path) -> None:
    first = runner.run(SPEC, out=tmp_path / "first")
    made = runner.reproduce(first, out=tmp_path / "again")
    assert made.run.dir.parent == tmp_path / "again"
    assert made.run.dir != first.dir and made.run.status == "succeeded"
    assert made.run.manifest.spec.name == "again"  # not "spec", its copy's file name
    assert made.same and made.report.outputs_same and made.causes == []
    assert made.run.manifest.settings is not None and first.manifest.settings is not None
    assert made.run.manifest.settings.threads == first.manifest.settings.threads
    texts = made.run.outputs["g"]
    assert [t.text for t in texts] == [t.text for t in first.outputs["g"]]


def test_reproduce_of_a_folder_that_is_no_run_is_a_runner_error(tmp_path: Path) -> None:
    with pytest.raises(runner.RunDirError):
        runner.reproduce(tmp_path)
