"""`op: train` against the same loop written by hand with torch, transformers and peft.

The hand-written side: the base, `add_adapter(LoraConfig(...))` after `torch.manual_seed(0)`
(as a config adapter is made), then the documented loop (README): a seeded permutation of
the records, AdamW over the LoRA weights, transformers' own loss. The runner's saved
adapter must hold exactly those tensors; the same spec must give the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import runner
from runner import api, builtin
from runner.errors import SpecError
from runner.record import rundir

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
PROMPTS = ["The cat", "The dog", "A little bird"]
COMPLETIONS = [" landed a rocket on the moon.", " flew up to the stars.", " saw the sun."]
TRAIN = {"steps": 5, "learning_rate": 5e-3, "batch_size": 2, "max_length": 16, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(folder: Path, **texts: Any) -> dict[str, Any]:
    records = [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fields = texts or {
        "prompt": {"data": "records", "field": "prompt"},
        "completion": {"data": "records", "field": "completion"},
    }
    return {
        "version": 1,
        "name": "training",
        "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
        "adapters": {"fresh": {"config": {"type": "lora", **LORA}}},
        "data": {"records": {"path": str(folder / "records.jsonl")}},
        "steps": [
            {"op": "load", "adapters": "fresh"},
            {"op": "train", "id": "trained", "adapter": "fresh", **fields, **TRAIN},
            {"op": "generate", "id": "after", "prompt": PROMPTS, "max_new_tokens": 6},
        ],
    }


def by_hand(texts: bool = False) -> tuple[dict[str, torch.Tensor], list[float], Any, Any]:
    base = builtin.resolve("tiny-causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    model.add_adapter(LoraConfig(**LORA), adapter_name="fresh")
    examples = []
    for prompt, completion in zip(PROMPTS, COMPLETIONS, strict=True):
        ids = tokenizer(prompt + completion)["input_ids"][: TRAIN["max_length"]]
        head = 0 if texts else len(tokenizer(prompt)["input_ids"])
        examples.append((ids, [-100] * head + ids[head:]))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=TRAIN["learning_rate"])
    generator = torch.Generator().manual_seed(TRAIN["seed"])
    order: list[int] = []
    torch.manual_seed(TRAIN["seed"])
    model.train()
    losses = []
    for _ in range(TRAIN["steps"]):
        chosen = []
        for _ in range(TRAIN["batch_size"]):
            if not order:
                order = torch.randperm(len(examples), generator=generator).tolist()
            chosen.append(examples[order.pop(0)])
        width = max(len(i) for i, _ in chosen)
        pad = tokenizer.pad_token_id
        out = model(
            input_ids=torch.tensor([i + [pad] * (width - len(i)) for i, _ in chosen]),
            attention_mask=torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chosen]),
            labels=torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chosen]),
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    model.eval()
    state = {
        n.replace(".fresh.", "."): p.detach().clone()
        for n, p in model.named_parameters()
        if "lora_" in n
    }
    return state, losses, model, tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> api.Run:
    folder = tmp_path_factory.mktemp("train")
    return api.run(spec(folder), out=folder / "runs")


def test_the_trained_adapter_is_the_loop_by_hand(trained: api.Run) -> None:
    want, losses, _, _ = by_hand()
    (out,) = trained.dir.glob("outputs/*-trained")
    got = load_file(out / "adapter_model.safetensors")
    assert sorted(got) == sorted(f"base_model.model.{k}" for k in want)
    for key, tensor in want.items():
        assert torch.equal(got[f"base_model.model.{key}"], tensor), key
    lines = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, TRAIN["steps"] + 1))
    assert [r["loss"] for r in lines] == losses
    assert {r["learning_rate"] for r in lines} == {TRAIN["learning_rate"]}


def test_the_trained_adapter_is_active_and_loads_back(trained: api.Run) -> None:
    step = next(s for s in trained.manifest.steps if s.id == "trained")
    assert step.active_adapters == {"fresh": 1.0}
    assert {Path(o.path).name for o in step.outputs} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "loss.jsonl",
    }
    (out,) = trained.dir.glob("outputs/*-trained")
    base = builtin.resolve("tiny-causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, out).eval()
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    rows = model.generate(**batch, max_new_tokens=6, do_sample=False)
    new = rows[:, batch["input_ids"].shape[1] :].tolist()
    got = [t.token_ids for t in trained.outputs["after"]]  # type: ignore[union-attr]
    eos = tokenizer.eos_token_id
    assert got == [r[: r.index(eos) + 1] if eos in r else r for r in new]


def test_the_loss_is_on_the_completion_alone(tmp_path: Path) -> None:
    _, on_completion, _, _ = by_hand()
    _, on_all, _, _ = by_hand(texts=True)
    assert on_completion != on_all  # the prompt's tokens are masked: another loss
    texts = [p + c for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    run = api.run(spec(tmp_path, text=texts), out=tmp_path / "runs")
    (out,) = run.dir.glob("outputs/*-trained")
    lines = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines] == on_all


def test_the_same_spec_gives_the_same_adapter_bytes(trained: api.Run) -> None:
    again = api.reproduce(trained)
    assert again.same, again.causes
    (old,) = trained.dir.glob("outputs/*-trained/adapter_model.safetensors")
    (new,) = again.run.dir.glob("outputs/*-trained/adapter_model.safetensors")
    assert old.read_bytes() == new.read_bytes()


def test_training_a_pipeline_is_a_validation_error(tmp_path: Path) -> None:
    written = {
        "version": 1,
        "model": {"family": "diffusers", "path": "builtin:tiny-sd"},
        "adapters": {"a": {"path": "builtin:tiny-sd-lora-a"}},
        "steps": [
            {"op": "load", "adapters": "a"},
            {"op": "train", "adapter": "a", "text": "x", "steps": 1},
        ],
    }
    with pytest.raises(SpecError, match="op: train needs a causal LM"):
        api.load_spec(written, base_dir=tmp_path)


def test_the_report_draws_the_loss_curve(trained: api.Run) -> None:
    page = api.write_report(trained).read_text()
    (out,) = trained.dir.glob("outputs/*-trained")
    losses = [json.loads(line)["loss"] for line in (out / "loss.jsonl").read_text().splitlines()]
    (svg,) = re.findall(r"<svg class=losses.*?</svg>", page)
    (points,) = re.findall(r"points='([^']*)'", svg)
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert len(ys) == TRAIN["steps"]
    # the highest loss is drawn at the top (smallest y), the lowest at the bottom
    assert ys.index(min(ys)) == losses.index(max(losses))
    assert ys.index(max(ys)) == losses.index(min(losses))
    assert "<script" not in svg


class StopAt:
    """A ticker that stops the run, as Ctrl-C would, once training step AT has finished."""

    verbose = False

    def __init__(self, at: int) -> None:
        self.at = at

    def tick(self, done: int, total: int | None, unit: str) -> None:
        if unit.startswith("training steps") and done == self.at:
            raise runner.Interrupted("SIGINT")

    def note(self, text: str) -> None:
        pass


def test_stopping_after_k_steps_and_continuing_is_the_straight_run(
    trained: api.Run, tmp_path: Path
) -> None:
    written = spec(tmp_path)
    written["steps"][1]["checkpoint_every"] = 2
    with pytest.raises(runner.Interrupted) as stopped:
        api.run(written, out=tmp_path / "runs", ticker=StopAt(3))
    old = stopped.value.run_dir
    assert old is not None
    (folder,) = old.glob("outputs/*-trained")
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    state = json.loads((folder / "checkpoint.json").read_text())
    assert state["steps_done"] == 2  # step 3 finished, but its checkpoint was not due
    assert runner.verify(old).ok
    lines: list[str] = []
    resumed = runner.resume(old, progress=lines.append)
    assert any("training continues from the checkpoint of step 2" in line for line in lines)
    (straight,) = trained.dir.glob("outputs/*-trained")
    (again,) = resumed.dir.glob("outputs/*-trained")
    # no checkpoint is left once the adapter is written
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in straight.iterdir())
    for name in ("adapter_model.safetensors", "adapter_config.json", "loss.jsonl"):
        assert (again / name).read_bytes() == (straight / name).read_bytes(), name
    assert runner.verify(resumed).ok


def test_a_damaged_checkpoint_trains_from_the_start(trained: api.Run, tmp_path: Path) -> None:
    written = spec(tmp_path)
    written["steps"][1]["checkpoint_every"] = 1
    with pytest.raises(runner.Interrupted) as stopped:
        api.run(written, out=tmp_path / "runs", ticker=StopAt(4))
    old = stopped.value.run_dir
    assert old is not None
    (tensors,) = old.glob("outputs/*-trained/checkpoint.safetensors")
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 1
    tensors.write_bytes(bytes(data))
    lines: list[str] = []
    resumed = runner.resume(old, progress=lines.append)
    assert any("checkpoint.safetensors changed" in line for line in lines)
    assert not any("training continues" in line for line in lines)
    (straight,) = trained.dir.glob("outputs/*-trained/adapter_model.safetensors")
    (again,) = resumed.dir.glob("outputs/*-trained/adapter_model.safetensors")
    assert again.read_bytes() == straight.read_bytes()


def test_diff_names_the_trained_adapter_that_changed(trained: api.Run, tmp_path: Path) -> None:
    written = spec(tmp_path)
    written["steps"][1]["learning_rate"] = 1e-3
    other = api.run(written, out=tmp_path / "runs")
    report = runner.diff(trained, other)
    (a,), (b,) = (
        [o.sha256 for s in r.manifest.steps for o in s.outputs if o.path.endswith(".safetensors")]
        for r in (trained, other)
    )
    assert report.adapters == [
        f"adapter 'fresh' changed (step 2 train): sha256 {a[:12]}… -> {b[:12]}…"
    ]
    assert f"  {report.adapters[0]}" in report.format_text()
    assert runner.diff(trained, trained).adapters == []


def test_the_train_quickstart(tmp_path: Path) -> None:
    """specs/quickstart-train.yaml, as `make demo` runs it: training changes what the model
    writes (its expect: holds), and the saved adapter is the trained one."""
    root = Path(__file__).resolve().parents[2]
    run = runner.run(root / "specs" / "quickstart-train.yaml", out=tmp_path)
    assert run.status == "succeeded"
    (compared,) = [s for s in run.manifest.steps if s.op == "compare"]
    assert compared.expectations and all(e.passed for e in compared.expectations)
    trained, saved = (
        (run.dir / "outputs" / name / "adapter_model.safetensors").read_bytes()
        for name in ("02-fresh", "04-saved")
    )
    assert trained == saved
    losses = [json.loads(x)["loss"] for x in (run.dir / "outputs/02-fresh/loss.jsonl").open()]
    assert len(losses) == 40 and losses[-1] < losses[0] / 2


def test_a_checkpoint_split_by_a_kill_trains_from_the_start(
    trained: api.Run, tmp_path: Path
) -> None:
    """A process killed between the checkpoint's two files: the JSON names other tensors.
    SHA256SUMS lists what is there (as a parent closing the run writes it); not used."""
    written = spec(tmp_path)
    written["steps"][1]["checkpoint_every"] = 1
    runs = []
    for at in (3, 4):
        with pytest.raises(runner.Interrupted) as stopped:
            api.run(written, out=tmp_path / f"runs-{at}", ticker=StopAt(at))
        assert stopped.value.run_dir is not None
        runs.append(stopped.value.run_dir)
    (older,), (newer,) = (r.glob("outputs/*-trained/checkpoint.safetensors") for r in runs)
    newer.write_bytes(older.read_bytes())  # step 2's tensors beside step 3's JSON
    rundir.write_sums(runs[1], {})
    lines: list[str] = []
    resumed = runner.resume(runs[1], progress=lines.append)
    assert any("is incomplete: not used" in line for line in lines), lines
    (straight,) = trained.dir.glob("outputs/*-trained/adapter_model.safetensors")
    (again,) = resumed.dir.glob("outputs/*-trained/adapter_model.safetensors")
    assert again.read_bytes() == straight.read_bytes()
