"""runner.run's progress: silent by default in a script, shown by default in a notebook
(tqdm's bar and the lines on stderr), a function gets the lines; run.outputs names its ids
for a missing one; runner.run_many's result iterates and indexes its outcomes."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import runner

SPEC = """\
version: 1
name: {name}
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
steps:
  - {{op: load, adapters: a}}
  - {{op: generate, id: words, prompt: the cat, max_new_tokens: 3}}
  - op: compare
    id: grid
    adapters: [base, a]
    prompt: the cat
    seed: [0, 1]
    max_new_tokens: 2
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    file = tmp_path / "s.yaml"
    file.write_text(SPEC.format(name="s"))
    return file


def fake_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = types.SimpleNamespace(kernel=object())  # what a Jupyter kernel's shell has
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)


def test_silent_by_default_outside_a_notebook(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.run(spec, out=tmp_path / "runs")
    assert capsys.readouterr().err == ""


def test_shown_by_default_in_a_notebook(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_notebook(monkeypatch)
    runner.run(spec, out=tmp_path / "runs")
    err = capsys.readouterr().err
    assert "loading model builtin:tiny-causal-lm (transformers) ..." in err
    assert "step 2/3 generate" in err and "step 3/3 compare" in err
    assert "/4" in err  # tqdm's bar over the compare's four cells ("n/4")
    quiet = runner.run(spec, out=tmp_path / "runs", progress=False)
    assert quiet.status == "succeeded" and capsys.readouterr().err == ""


def test_a_function_gets_the_lines_and_a_missing_output_names_the_ids(
    spec: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    run = runner.run(spec, out=tmp_path / "runs", progress=lines.append)
    assert lines[0] == "loading model builtin:tiny-causal-lm (transformers) ..."
    assert any(line.startswith("step 3/3 compare") for line in lines)
    with pytest.raises(KeyError) as caught:
        run.outputs["nosuch"]
    assert str(caught.value) == (
        f"no step 'nosuch' with outputs in {run.dir} (steps: 'words', 'grid')"
    )
    assert len(run.outputs["words"]) == 1


def test_run_many_iterates_and_indexes_its_outcomes(tmp_path: Path) -> None:
    files = []
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(name=name))
        files.append(tmp_path / f"{name}.yaml")
    many = runner.run_many(files, out=tmp_path / "runs")
    assert [o.name for o in many] == ["one", "two"]
    assert many[1] is many.outcomes[1] and many[-1].name == "two" and len(many) == 2
    assert [o.name for o in many[:1]] == ["one"] and many.ok
