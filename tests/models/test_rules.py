"""One home per rule: the pickle decision, run-time adapter names, the run directory's file
names, the cells reader's errors. Expected values are written down here, not read from code."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner
from runner.errors import RunDirError, StepError
from runner.record import cells
from runner.record.recorder import Recorder
from runner.running.ending import finish
from runner.sources import names
from runner.spec.types import Adapter


@pytest.mark.parametrize("name", ["a.bin", "a.pt", "a.pth", "a.ckpt", "a.pkl"])
def test_the_pickle_extensions_are_pickles(name: str) -> None:
    assert names.is_pickle(name) and not names.is_safetensors(name)


@pytest.mark.parametrize("name", ["a.safetensors", "a.gguf", "a.txt", "README", "bin", "a.bin.md"])
def test_a_file_without_a_pickle_extension_is_no_pickle(name: str) -> None:
    assert not names.is_pickle(name)


def test_the_spec_refuses_a_folder_of_only_pickles_but_not_of_other_files(tmp_path: Path) -> None:
    def adapter_problems(folder: Path) -> list[str]:
        spec = {
            "version": 1,
            "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
            "adapters": {"a": {"path": str(folder)}},
            "steps": [{"op": "load", "adapters": ["a"]}],
        }
        return [p.message for p in runner.validate(spec)]

    pickles, other = tmp_path / "pickles", tmp_path / "other"
    pickles.mkdir()
    other.mkdir()
    (pickles / "lora.ckpt").write_bytes(b"x")
    (other / "lora.gguf").write_bytes(b"x")
    assert any("holds only a pickled checkpoint" in m for m in adapter_problems(pickles))
    assert not any("pickled" in m for m in adapter_problems(other))


def test_a_run_directory_holds_exactly_the_files_of_its_layout(tmp_path: Path) -> None:
    spec = runner.load_spec(
        {
            "version": 1,
            "name": "empty",
            "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
            "steps": [{"op": "disable"}],
        }
    )
    recorder = Recorder.start(tmp_path, spec)
    finish(recorder, "succeeded")
    files = sorted(p.name for p in recorder.run.iterdir())
    assert files == ["SHA256SUMS", "manifest.json", "report.html", "resolved.json", "spec.yaml"]
    listed = (recorder.run / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in listed) == [
        "manifest.json",
        "report.html",
        "resolved.json",
        "spec.yaml",
    ]


def test_a_bad_cells_line_is_a_run_directory_error(tmp_path: Path) -> None:
    file = tmp_path / "cells.jsonl"
    file.write_text(
        '{"row": "base", "adapters": null, "prompt": "p", "seed": 1, "text": "t"}\n{}\n'
    )
    with pytest.raises(RunDirError, match=r"cells.jsonl:2: not a cell"):
        cells.read(file)
    with pytest.raises(RunDirError, match="not readable"):
        cells.read(tmp_path / "absent.jsonl")


@pytest.mark.models
def test_the_diffusers_backend_refuses_a_reserved_adapter_name_at_run_time() -> None:
    from runner.backends.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend("cpu", "float32")
    with pytest.raises(StepError, match="adapter name 'half' is reserved by torch"):
        backend.load_adapter(Adapter(name="half", path="./lora"), None)
    with pytest.raises(StepError, match="adapter name 'base' is reserved"):
        backend.load_adapter(Adapter(name="base", path="./lora"), None)


@pytest.mark.models
@pytest.mark.parametrize("allow", [False, True])
def test_transformers_reads_no_file_that_is_neither_safetensors_nor_pickle(
    tmp_path: Path, allow: bool
) -> None:
    from runner.backends.transformers_backend import _read_weights

    file = tmp_path / "adapter.gguf"
    file.write_bytes(b"GGUF")
    with pytest.raises(StepError, match="neither a safetensors file nor a pickled checkpoint"):
        _read_weights(file, allow)


def test_a_bad_completions_line_is_a_run_directory_error(tmp_path: Path) -> None:
    from runner.record import completions

    file = tmp_path / "completions.jsonl"
    good = '{"prompt": "p", "text": " t", "token_ids": [1, 2], "seed": 3, "adapters": {"a": 1}}'
    file.write_text(good + '\n{"prompt": "p"}\n')
    with pytest.raises(RunDirError, match=r"completions.jsonl:2: not a completion"):
        completions.read(file)
    file.write_text(good + "\n")
    [read] = completions.read(file)
    assert (read.prompt, read.text, read.token_ids, read.seed) == ("p", " t", [1, 2], 3)
    assert read.adapters == {"a": 1.0}


def test_the_report_shows_the_seed_each_png_records(tmp_path: Path) -> None:
    """Not seed + k recomputed from the step's arguments: what the record says."""
    from PIL import Image

    from runner.record import manifest as m
    from runner.results import GeneratedImage

    spec = runner.load_spec(
        {
            "version": 1,
            "name": "seeds",
            "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
            "steps": [{"op": "generate", "id": "pics", "prompt": ["red", "blue"], "seed": 4}],
        }
    )
    recorder = Recorder.start(tmp_path, spec)
    pictures = [
        GeneratedImage(Image.new("RGB", (8, 8)), p, s) for p, s in [("red", 70), ("blue", 91)]
    ]
    outputs = recorder.outputs("outputs/01-pics", pictures, None)
    arguments = {"prompt": ["red", "blue"], "seed": 4}
    recorder.step(
        m.StepRecord(
            index=1,
            op="generate",
            id="pics",
            line=5,
            status="ok",
            seconds=0.1,
            arguments=arguments,
            outputs=outputs,
        )
    )
    finish(recorder, "succeeded")
    page = (recorder.run / "report.html").read_text(encoding="utf-8")
    assert "seed 70 " in page and "seed 91 " in page
    assert "seed 4 " not in page and "seed 5 " not in page


TEXT_SPEC = {
    "version": 1,
    "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
    "steps": [{"op": "disable"}],
}


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", "cpu\n"])
def test_the_api_refuses_a_device_the_spec_could_not_name(tmp_path: Path, device: str) -> None:
    expected = "expected auto, cpu, cuda, cuda:N or mps"
    with pytest.raises(runner.Refused, match=expected):
        runner.run(TEXT_SPEC, out=tmp_path / "runs", device=device)
    with pytest.raises(runner.Refused, match=expected):
        runner.run_many([TEXT_SPEC], out=tmp_path / "runs", device=device)
    assert not (tmp_path / "runs").exists()  # refused before anything was made


def test_library_errors_name_no_command_line_flag(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("")
    with pytest.raises(RunDirError) as caught:
        runner.run(TEXT_SPEC, out=file)
    assert str(caught.value).startswith(f"out folder {file}: is a file")
    assert "--" not in str(caught.value)


def test_one_table_per_layer_dispatches_the_same_ops() -> None:
    from runner.running.interpreter import OPS
    from runner.spec.checks import ADAPTER_CHECKS
    from runner.spec.schema import ops
    from runner.spec.types import BUILDERS

    written = ["load", "set_adapters", "generate", "compare", "disable", "enable"]
    written += ["score", "merge", "train", "save"]  # CONTRACT sections 10 and 11
    written += ["fuse", "unfuse", "delete"]  # CONTRACT section 12
    assert ops() == written
    assert sorted(BUILDERS) == sorted(OPS) == sorted(ADAPTER_CHECKS) == sorted(written)
