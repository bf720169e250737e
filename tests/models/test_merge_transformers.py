"""`op: merge` and `op: save` on a causal LM against peft by hand.

The oracle: `PeftModel.from_pretrained(base, a)`, `load_adapter(b)`, `torch.manual_seed(0)`,
`add_weighted_adapter(...)`, `set_adapter(...)`, exactly as a peft user writes it. The
runner's merged adapter (its saved tensors) and its tokens must be that adapter's; its
saved folder must load with `PeftModel.from_pretrained` and transformers' `load_adapter`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from runner import api, builtin
from runner.errors import StepError

PROMPTS = ["the sea is", "a rocket"]
NEW = 8
# method -> its options; every combination type peft has
METHODS: dict[str, dict[str, Any]] = {
    "linear": {},
    "cat": {},
    "svd": {},
    "ties": {"density": 0.5},
    "ties_svd": {"density": 0.5, "majority_sign_method": "frequency", "svd_rank": 4},
    "dare_linear": {"density": 0.7},
    "dare_ties": {"density": 0.7},
    "dare_linear_svd": {"density": 0.7},
    "dare_ties_svd": {"density": 0.7},
    "magnitude_prune": {"density": 0.3},
    "magnitude_prune_svd": {"density": 0.3},
}
WEIGHTS = {"a": 1.0, "b": 0.5}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "merging",
        "model": {"family": "transformers", "path": "builtin:tiny-causal-lm"},
        "adapters": {
            "a": {"path": "builtin:tiny-causal-lm-lora-a"},
            "b": {"path": "builtin:tiny-causal-lm-lora-b"},
        },
        "steps": [{"op": "load", "adapters": ["a", "b"]}, *steps],
    }


def generate(step_id: str) -> dict[str, Any]:
    return {
        "op": "generate",
        "id": step_id,
        "prompt": PROMPTS,
        "max_new_tokens": NEW,
        "do_sample": False,
    }


def tokens(run: api.Run, step_id: str) -> list[list[int]]:
    return [t.token_ids for t in run.outputs[step_id]]  # type: ignore[union-attr]


def step_folder(run: api.Run, step_id: str) -> Path:
    """The output folder of the step with id STEP_ID: outputs/NN-STEP_ID."""
    (found,) = [p for p in (run.dir / "outputs").iterdir() if p.name.split("-", 1)[1] == step_id]
    return found


def hand(adapters: tuple[str, ...] = ("a", "b")) -> tuple[Any, Any]:
    """The base with the builtin adapters, as a peft user loads them."""
    base = builtin.resolve("tiny-causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    first, *rest = adapters
    model = PeftModel.from_pretrained(
        model, builtin.resolve(f"tiny-causal-lm-lora-{first}"), adapter_name=first
    )
    for name in rest:
        model.load_adapter(builtin.resolve(f"tiny-causal-lm-lora-{name}"), adapter_name=name)
    return model.eval(), tokenizer


def hand_tokens(model: Any, tokenizer: Any) -> list[list[int]]:
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=NEW, do_sample=False)
    eos = tokenizer.eos_token_id
    rows = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


@pytest.fixture(scope="module")
def every_method(tmp_path_factory: pytest.TempPathFactory) -> api.Run:
    """One run merging a and b with every method, generating under two of them."""
    steps: list[dict[str, Any]] = []
    for method, options in METHODS.items():
        merged = {"op": "merge", "id": method.replace("_", "-"), "name": f"m_{method}"}
        steps.append({**merged, "method": method, "adapters": WEIGHTS, **options})
        if method in ("ties", "cat"):
            steps.append(generate(f"tokens-{method}"))
    return api.run(spec(steps), out=tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_is_peft_add_weighted_adapter(every_method: api.Run, method: str) -> None:
    model, _ = hand()
    torch.manual_seed(0)
    model.add_weighted_adapter(
        list(WEIGHTS),
        list(WEIGHTS.values()),
        "hand",
        combination_type=method,
        **METHODS[method],
    )
    # a PeftModel's keys: base_model.model. + the module path, as the runner writes them
    want = get_peft_model_state_dict(model, adapter_name="hand", save_embedding_layers=False)
    folder = step_folder(every_method, method.replace("_", "-"))
    got = load_file(folder / "adapter_model.safetensors")
    assert sorted(got) == sorted(want)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == model.peft_config["hand"].r
    assert config["lora_alpha"] == model.peft_config["hand"].lora_alpha


@pytest.mark.parametrize("method", ["ties", "cat"])
def test_merged_tokens_are_peft_by_hand(every_method: api.Run, method: str) -> None:
    model, tokenizer = hand()
    torch.manual_seed(0)
    model.add_weighted_adapter(
        list(WEIGHTS), list(WEIGHTS.values()), "hand", combination_type=method, **METHODS[method]
    )
    model.set_adapter("hand")
    assert tokens(every_method, f"tokens-{method}") == hand_tokens(model, tokenizer)


def test_the_manifest_names_the_merged_files(every_method: api.Run) -> None:
    step = next(s for s in every_method.manifest.steps if s.id == "ties")
    assert [Path(o.path).name for o in step.outputs] == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert step.active_adapters == {"m_ties": 1.0}
    for output in step.outputs:
        assert hashlib.sha256((every_method.dir / output.path).read_bytes()).hexdigest() == (
            output.sha256
        )


def test_linear_of_one_adapter_at_one_is_that_adapter(tmp_path: Path) -> None:
    run = api.run(
        spec(
            [
                {"op": "set_adapters", "adapters": "a"},
                generate("plain"),
                {"op": "merge", "name": "again", "adapters": {"a": 1.0}},
                generate("merged"),
            ]
        ),
        out=tmp_path,
    )
    assert tokens(run, "merged") == tokens(run, "plain")
    model, tokenizer = hand(("a",))
    assert tokens(run, "plain") == hand_tokens(model, tokenizer)
    model, tokenizer = hand(("b",))
    assert tokens(run, "plain") != hand_tokens(model, tokenizer)  # the adapters differ


def test_saved_folders_load_back_with_peft_and_transformers(tmp_path: Path) -> None:
    run = api.run(
        spec(
            [
                {
                    "op": "merge",
                    "id": "blend",
                    "name": "blend",
                    "method": "svd",
                    "adapters": WEIGHTS,
                },
                generate("merged"),
                {"op": "save", "id": "saved-a", "adapter": "a", "format": "peft"},
                {"op": "set_adapters", "adapters": "a"},
                generate("plain-a"),
            ]
        ),
        out=tmp_path / "runs",
    )
    base = builtin.resolve("tiny-causal-lm")
    for step_id, made in (("blend", "merged"), ("saved-a", "plain-a")):
        folder = step_folder(run, step_id)
        _, tokenizer = hand(("a",))
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft_model = PeftModel.from_pretrained(model, folder).eval()
        assert hand_tokens(peft_model, tokenizer) == tokens(run, made), step_id
        plain: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        plain.load_adapter(str(folder), adapter_name="x")
        assert hand_tokens(plain.eval(), tokenizer) == tokens(run, made), step_id


def test_the_same_spec_gives_the_same_adapter_bytes(every_method: api.Run) -> None:
    again = api.reproduce(every_method)
    assert again.same, again.causes
    old = sorted(every_method.dir.glob("outputs/*/adapter_model.safetensors"))
    new = sorted(again.run.dir.glob("outputs/*/adapter_model.safetensors"))
    assert len(old) == len(METHODS)
    assert [p.read_bytes() for p in old] == [p.read_bytes() for p in new]


def test_peft_refuses_linear_over_different_ranks(tmp_path: Path) -> None:
    written = spec([{"op": "merge", "name": "x", "method": "linear", "adapters": ["a", "wide"]}])
    written["adapters"]["wide"] = {
        "config": {"type": "lora", "r": 4, "target_modules": ["q_proj"], "init_lora_weights": False}
    }
    written["steps"].insert(1, {"op": "load", "adapters": "wide"})
    with pytest.raises(StepError, match="same r value"):
        api.run(written, out=tmp_path)


def test_rslora_and_dora_are_refused(tmp_path: Path) -> None:
    for option, said in (("use_rslora", "use_rslora"), ("use_dora", "DoRA")):
        written = spec([{"op": "merge", "name": "x", "method": "cat", "adapters": ["a", "odd"]}])
        written["adapters"]["odd"] = {
            "config": {"type": "lora", "target_modules": ["q_proj"], option: True}
        }
        written["steps"].insert(1, {"op": "load", "adapters": "odd"})
        with pytest.raises(StepError, match=said):
            api.run(written, out=tmp_path / option)
