"""A bug of the runner is no user error: recorded in the manifest, shown with its traceback,
exit 3 (CONTRACT section 2); errors of the user and the machine keep their one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import exit_code, main
from runner.errors import Interrupted, Refused, RunDirError, SpecError, StepError
from runner.record.recorder import Recorder

SPEC = """\
version: 1
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
steps:
  - {op: disable}
  - {op: generate, prompt: The cat, max_new_tokens: 2}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.models
def test_a_bug_inside_a_step_is_an_internal_error_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("token_ids")

    monkeypatch.setattr(Recorder, "outputs", broken)  # the runner's own recording of outputs
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    code, out, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 3
    assert "Traceback (most recent call last)" in err
    assert "in broken" in err  # the traceback reaches the function that raised
    assert "internal error" in err and "KeyError: 'token_ids'" in err
    (run,) = (tmp_path / "runs").iterdir()
    assert f"what finished is kept in {run}" in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"]["step"] == 2
    assert manifest["error"]["message"] == "KeyError: 'token_ids'"
    assert [s["status"] for s in manifest["steps"]] == ["ok", "failed"]
    assert (run / "SHA256SUMS").is_file()


@pytest.mark.models
def test_a_failing_step_for_a_user_reason_stays_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.replace("{op: disable}", "{op: load, adapters: a}").replace(
            "steps:", "adapters: {a: {path: ./missing-lora}}\nsteps:"
        )
    )
    (tmp_path / "missing-lora").mkdir()
    code, _, err = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code in (1, 2) and "Traceback" not in err and "internal error" not in err


def test_a_bug_outside_a_run_exits_3_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runner

    def broken(*args: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'steps'")

    monkeypatch.setattr(runner, "diff", broken)
    code, _, err = invoke("diff", str(tmp_path), str(tmp_path))
    assert code == 3
    assert "Traceback" in err and "internal error" in err and "AttributeError" in err


@pytest.mark.parametrize(
    ("error", "failed", "code"),
    [
        (SpecError([]), 2, 1),
        (Refused("changed"), 2, 1),
        (StepError("step 1"), 1, 2),
        (RunDirError("no manifest"), 2, 2),
        (RunDirError("no manifest"), 1, 1),
        (OSError(28, "No space left on device"), 1, 1),
        (Interrupted("SIGINT"), 2, 130),
        (KeyboardInterrupt(), 1, 130),
        (KeyError("x"), 2, 3),
        (TypeError("x"), 1, 3),
        (MemoryError(), 1, 3),
    ],
)
def test_exit_codes_come_from_one_table(error: BaseException, failed: int, code: int) -> None:
    assert exit_code(error, failed) == code
