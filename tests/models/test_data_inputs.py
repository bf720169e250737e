"""A data file is an input of the run: hashed in the manifest, and a changed one refuses
`reproduce` and `run --resume`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from commands import invoke

import runner

SPEC = """\
version: 1
name: from-data
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
data:
  prompts: {path: data/prompts.csv}
defaults:
  generate: {max_new_tokens: 3}
steps:
  - {op: generate, id: first, prompt: {data: prompts, field: prompt}}
  - {op: generate, id: second, prompt: the end}
"""


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text("prompt,other\nThe cat,1\nA bird,2\n")
    file = tmp_path / "from-data.yaml"
    file.write_text(SPEC)
    return file


def test_the_data_file_is_a_hashed_input_and_a_change_refuses(spec: Path, tmp_path: Path) -> None:
    data = spec.parent / "data" / "prompts.csv"
    done = runner.run(spec, out=tmp_path / "runs")
    recorded = done.manifest.inputs.data["prompts"]
    assert recorded.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (recorded.path, recorded.records) == ("data/prompts.csv", 2)
    first = done.outputs["first"]
    assert [t.prompt for t in first] == ["The cat", "A bird"]  # type: ignore[union-attr]

    assert runner.reproduce(done).same
    data.write_text("prompt,other\nThe dog,1\nA bird,2\n")
    with pytest.raises(runner.Refused, match=r"data 'prompts' file data/prompts.csv: sha256"):
        runner.reproduce(done)

    def stop(line: str) -> None:
        if line.startswith("step 1/"):
            raise runner.Interrupted("SIGINT")

    with pytest.raises(runner.Interrupted) as stopped:
        runner.run(spec, out=tmp_path / "runs", progress=stop)
    data.write_text("prompt,other\nThe cow,1\nA bird,2\n")
    code, _, err = invoke("run", "--resume", str(stopped.value.run_dir))
    assert code == 1
    assert "data 'prompts' file data/prompts.csv: sha256" in err
