"""Validation and resume messages a newcomer meets: a missing spec file says it does not
exist; a resume refused because the spec changed says that the run's own copy works."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands import invoke
from recorded import record

import runner


def test_a_missing_spec_file_says_it_does_not_exist(tmp_path: Path) -> None:
    code, out, err = invoke("validate", str(tmp_path / "nosuch.yaml"))
    assert code == 1
    assert f"{tmp_path / 'nosuch.yaml'}:1:1: $: the spec file does not exist" in out + err


def test_a_folder_given_as_a_spec_says_so(tmp_path: Path) -> None:
    code, out, err = invoke("validate", str(tmp_path))
    assert code == 1 and "this is a folder, not a spec file" in out + err


def test_a_resume_refused_for_a_changed_spec_names_the_runs_copy(tmp_path: Path) -> None:
    run_dir = record(tmp_path / "runs", "failed")
    changed = tmp_path / "changed.yaml"
    changed.write_text((run_dir / "spec.yaml").read_text().replace("report-page", "other"))
    with pytest.raises(runner.Refused) as caught:
        runner.resume(run_dir, spec=changed)
    message = str(caught.value)
    assert "changed since it ran" in message
    assert message.endswith(
        f"to resume the spec as it ran, pass the run's copy: {run_dir / 'spec.yaml'}"
    )
