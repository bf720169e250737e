"""Several specs in one command: a kept model is the model as loaded, failures stay local."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from commands import invoke

import runner
from runner import builtin
from runner.backends.diffusers_backend import DiffusersBackend
from runner.backends.transformers_backend import TransformersBackend
from runner.spec.arguments import ImageArguments, TextArguments
from runner.spec.types import Adapter, Generate, Model

TEXT = """\
version: 1
name: {name}
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: {a}}}
  b: {{path: builtin:tiny-causal-lm-lora-b}}
defaults:
  generate: {{max_new_tokens: 5}}
steps:
  - {{op: generate, id: base, prompt: [the cat, once upon a time]}}
  - {{op: load, adapters: [a, b]}}
  - {{op: set_adapters, adapters: {{a: 0.5, b: 1.0}}}}
  - {{op: generate, id: mix, prompt: the cat, seed: {seed}}}
  - {{op: disable}}
"""


def text_spec(
    folder: Path, name: str, seed: int = 0, a: str = "builtin:tiny-causal-lm-lora-a"
) -> Path:
    spec = folder / f"{name}.yaml"
    spec.write_text(TEXT.format(name=name, seed=seed, a=a))
    return spec


def files(run: Path) -> dict[str, bytes]:
    """Every output file of a run, by path."""
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted((run / "outputs").rglob("*"))
        if p.is_file()
    }


def test_a_reused_causal_lm_is_the_freshly_loaded_one() -> None:
    model = Model("transformers", "builtin:tiny-causal-lm")
    source = str(builtin.resolve("tiny-causal-lm"))
    prompt = Generate(("the cat", "once upon a time"), True, 0, TextArguments(max_new_tokens=8))
    a = Adapter("a", "builtin:tiny-causal-lm-lora-a")
    b = Adapter("b", "builtin:tiny-causal-lm-lora-b")
    fresh = TransformersBackend("cpu", "float32")
    fresh.load_model(model, source)
    expected = [c.token_ids for c in fresh.generate(prompt)]

    used = TransformersBackend("cpu", "float32")
    used.load_model(model, source)
    used.load_adapter(a, builtin.resolve("tiny-causal-lm-lora-a"))
    used.load_adapter(b, builtin.resolve("tiny-causal-lm-lora-b"))
    used.set_adapters({"a": 0.5, "b": 2.0})
    assert [c.token_ids for c in used.generate(prompt)] != expected  # the adapters do act
    used.disable()  # a model left disabled must not leave a disabled wrapper behind
    used.unload_adapters()

    assert [type(x).__name__ for x in used.model.modules()] == [
        type(x).__name__ for x in fresh.model.modules()
    ]
    reused, loaded = used.model.state_dict(), fresh.model.state_dict()
    assert list(reused) == list(loaded)
    assert all(torch.equal(reused[k], loaded[k]) for k in loaded)
    assert [c.token_ids for c in used.generate(prompt)] == expected
    # The next spec loads an adapter into it: it must act as on a fresh model.
    fresh.load_adapter(a, builtin.resolve("tiny-causal-lm-lora-a"))
    used.load_adapter(a, builtin.resolve("tiny-causal-lm-lora-a"))
    with_a = [c.token_ids for c in fresh.generate(prompt)]
    assert with_a != expected
    assert [c.token_ids for c in used.generate(prompt)] == with_a


def test_a_reused_pipeline_is_the_freshly_loaded_one() -> None:
    model = Model("diffusers", "builtin:tiny-sd")
    source = str(builtin.resolve("tiny-sd"))
    step = Generate(("a cat",), False, 3, ImageArguments(num_inference_steps=2))
    a = Adapter("a", "builtin:tiny-sd-lora-a")
    b = Adapter("b", "builtin:tiny-sd-lora-b")
    fresh = DiffusersBackend("cpu", "float32")
    fresh.load_model(model, source)
    expected = np.asarray(fresh.generate(step)[0].image)

    used = DiffusersBackend("cpu", "float32")
    used.load_model(model, source)
    used.load_adapter(a, builtin.resolve("tiny-sd-lora-a"))
    used.load_adapter(b, builtin.resolve("tiny-sd-lora-b"))
    used.set_adapters({"a": 0.7, "b": 0.5})
    assert not np.array_equal(np.asarray(used.generate(step)[0].image), expected)
    used.disable()
    used.unload_adapters()

    for component in ("unet", "text_encoder", "vae"):
        reused = getattr(used.pipe, component).state_dict()
        loaded = getattr(fresh.pipe, component).state_dict()
        assert list(reused) == list(loaded), component
        assert all(torch.equal(reused[k], loaded[k]) for k in loaded), component
    assert np.array_equal(np.asarray(used.generate(step)[0].image), expected)
    fresh.load_adapter(a, builtin.resolve("tiny-sd-lora-a"))
    used.load_adapter(a, builtin.resolve("tiny-sd-lora-a"))
    with_a = np.asarray(fresh.generate(step)[0].image)
    assert not np.array_equal(with_a, expected)
    assert np.array_equal(np.asarray(used.generate(step)[0].image), with_a)


def test_one_invalid_spec_runs_nothing_and_shows_every_error(tmp_path: Path) -> None:
    good = text_spec(tmp_path, "good")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        TEXT.format(name="bad", seed=0, a="builtin:tiny-causal-lm-lora-a").replace(
            "[a, b]", "[a, c]"
        )
    )
    worse = tmp_path / "worse.yaml"
    worse.write_text("version: 1\nmodel: {family: transformers}\nsteps: []\n")
    code, out, err = invoke("run", str(good), str(bad), str(worse), "--out", str(tmp_path / "runs"))
    assert code == 1
    assert f"{bad}:13:" in err and "adapter 'c' is not declared" in err
    assert str(worse) in err and "path" in err
    assert not (tmp_path / "runs").exists()


def test_many_specs_share_the_model_and_a_failure_stops_none(tmp_path: Path) -> None:
    broken = tmp_path / "broken-adapter"
    broken.mkdir()
    config = builtin.resolve("tiny-causal-lm-lora-a") / "adapter_config.json"
    (broken / "adapter_config.json").write_bytes(config.read_bytes())
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    first = text_spec(tmp_path, "first")
    failing = text_spec(tmp_path, "failing", a="./broken-adapter")
    third = text_spec(tmp_path, "third", seed=5)
    image = tmp_path / "image.yaml"
    image.write_text(
        "version: 1\nname: image\ndevice: cpu\nmodel: {family: diffusers, path: builtin:tiny-sd}\n"
        "steps:\n  - {op: generate, prompt: a cat, num_inference_steps: 2}\n"
    )
    out = tmp_path / "runs"
    code, table, err = invoke(
        "run", str(first), str(image), str(failing), str(third), "--out", str(out)
    )
    assert code == 2, err
    lines = table.splitlines()
    # every run writes its report page, so the table has that column
    assert lines[0].split() == ["spec", "status", "seconds", "run", "directory", "report"]
    statuses = {line.split()[0]: line.split()[1] for line in lines[1:5]}
    assert statuses == {
        str(first): "succeeded",
        str(image): "succeeded",
        str(failing): "failed",
        str(third): "succeeded",
    }
    assert f"{failing}: {failing}:" in table and "adapter 'a'" in table
    runs = {json.loads((r / "manifest.json").read_text())["spec"]["name"]: r for r in out.iterdir()}
    assert set(runs) == {"first", "failing", "third", "image"}
    first_run = str(runs["first"])
    origins = {
        name: runner.open_run(r).manifest.origin.model_reused_from for name, r in runs.items()
    }
    # The text specs run back to back on one load, though the image spec was given between.
    assert origins == {"first": None, "failing": first_run, "third": first_run, "image": None}
    assert runner.open_run(runs["failing"]).status == "failed"
    # A spec on a reused model writes what it writes alone.
    code, alone, err = invoke("run", str(third), "--out", str(tmp_path / "alone"))
    assert code == 0, err
    assert files(runs["third"]) == files(Path(alone.strip()))
    assert runner.diff(runs["third"], Path(alone.strip())).same


def test_an_interrupt_keeps_finished_runs_and_records_the_running_one(tmp_path: Path) -> None:
    specs = [text_spec(tmp_path, name, seed=i) for i, name in enumerate(["one", "two", "three"])]

    def progress(line: str) -> None:
        if line.startswith("[two] step 2/"):
            raise runner.Interrupted("SIGINT")

    many = runner.run_many(specs, out=tmp_path / "runs", progress=progress)
    assert many.interrupted and not many.ok
    assert [o.status for o in many.outcomes] == ["succeeded", "interrupted", "not run"]
    stopped = many.outcomes[1].run_dir
    assert stopped is not None and runner.open_run(stopped).status == "interrupted"
    assert runner.verify(stopped).ok
    assert many.outcomes[2].run_dir is None
    assert len(list((tmp_path / "runs").iterdir())) == 2
