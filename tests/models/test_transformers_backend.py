"""Oracle tests: the transformers backend against the same steps written by hand."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import peft
import pytest
import torch
from diffusers.utils.peft_utils import set_weights_and_activate_adapters
from safetensors.torch import load_file, save_file
from tiny_lm import cut_at_eos, generate, load_base, make_base, make_lora, set_base_name

from runner.backends.transformers_backend import TransformersBackend
from runner.builtin import causal_lm, resolve
from runner.errors import StepError
from runner.spec.arguments import of
from runner.spec.types import Adapter, Generate, LoraConfig, Model

PROMPTS = ("the quick brown fox", "hello", "a tiny model for tests writes")
GREEDY: dict[str, Any] = {"max_new_tokens": 10, "do_sample": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and OpenMP threads crawl on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("models")
    base = make_base(root / "base")
    small = make_base(root / "small", hidden=32)
    deep = make_base(root / "deep", layers=3)
    return SimpleNamespace(
        root=root,
        base=base,
        a=make_lora(base, root / "a", seed=1),
        b=make_lora(base, root / "b", seed=2),
        c=make_lora(base, root / "c", seed=3, targets=("k_proj", "o_proj")),
        small_lora=make_lora(small, root / "small_lora", seed=4),
        deep_lora=make_lora(deep, root / "deep_lora", seed=5),
    )


@pytest.fixture(scope="module")
def base_tokens(files: SimpleNamespace) -> list[list[int]]:
    model, tokenizer = load_base(files.base)
    return generate(model, tokenizer, PROMPTS, **GREEDY)


def backend_for(folder: Path, path: str | None = None) -> TransformersBackend:
    backend = TransformersBackend("cpu", "float32")
    backend.load_model(Model(family="transformers", path=path or str(folder)), folder)
    return backend


def run(
    backend: TransformersBackend, prompts: tuple[str, ...] = PROMPTS, seed: int = 0, **args: Any
) -> list[list[int]]:
    step = Generate(
        prompts=prompts, batch=True, seed=seed, args=of("transformers", {**GREEDY, **args})
    )
    completions = backend.generate(step)
    for prompt, completion in zip(prompts, completions, strict=True):
        assert completion.prompt == prompt and completion.seed == seed
        assert completion.text == backend.tokenizer.decode(
            completion.token_ids, skip_special_tokens=True
        )
    return [c.token_ids for c in completions]


def load(backend: TransformersBackend, name: str, folder: Path, **kwargs: Any) -> None:
    backend.load_adapter(Adapter(name=name, path=str(folder), **kwargs), folder)


def oracle_with(files: SimpleNamespace, *names: str) -> tuple[Any, Any]:
    model, tokenizer = load_base(files.base)
    for name in names:
        model.load_adapter(str(getattr(files, name)), adapter_name=name)
    return model, tokenizer


def test_device_and_dtype_are_resolved(files: SimpleNamespace) -> None:
    assert TransformersBackend("cpu", "auto").dtype == "float32"
    backend = TransformersBackend("cpu", "bfloat16")
    backend.load_model(Model(family="transformers", path=str(files.base)), files.base)
    assert (backend.device, backend.dtype) == ("cpu", "bfloat16")
    assert backend.model.dtype == torch.bfloat16
    assert not backend.model.training


def test_base_model_matches_oracle(files: SimpleNamespace, base_tokens: list[list[int]]) -> None:
    backend = backend_for(files.base)
    assert run(backend) == base_tokens
    assert backend.tokenizer.padding_side == "left"


def test_load_from_folder(files: SimpleNamespace, base_tokens: list[list[int]]) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    expected = generate(*oracle_with(files, "a"), PROMPTS, **GREEDY)
    assert run(backend) == expected
    assert expected != base_tokens
    assert backend.model.active_adapters() == ["a"]


def test_weight_name_and_file_path(files: SimpleNamespace, tmp_path: Path) -> None:
    shutil.copy(files.a / "adapter_config.json", tmp_path)
    shutil.copy(files.a / "adapter_model.safetensors", tmp_path / "custom.safetensors")
    backend = backend_for(files.base)
    load(backend, "named", tmp_path, weight_name="custom.safetensors")
    load(backend, "file", tmp_path / "custom.safetensors")
    load(backend, "a", files.a)
    expected = run(backend)
    for name in ("named", "file"):
        backend.set_adapters({name: 1.0})
        assert run(backend) == expected


def test_add_from_config(files: SimpleNamespace, base_tokens: list[list[int]]) -> None:
    options = {
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,  # must be off: generation runs in eval mode
        "target_modules": ["q_proj", "v_proj"],
        "init_lora_weights": False,
        "task_type": "CAUSAL_LM",
    }
    backend = backend_for(files.base)
    torch.manual_seed(1234)  # the backend seeds its own init, whatever came before
    backend.load_adapter(Adapter(name="fresh", config=LoraConfig("lora", options)), None)
    model, tokenizer = load_base(files.base)
    torch.manual_seed(0)
    model.add_adapter(peft.LoraConfig(**options), adapter_name="fresh")
    model.eval()
    expected = generate(model, tokenizer, PROMPTS, **GREEDY)
    assert run(backend) == expected
    assert run(backend) == expected
    assert expected != base_tokens


def test_a_config_for_other_modules_is_a_step_error(files: SimpleNamespace) -> None:
    options = {"r": 4, "target_modules": ["no_such_proj"]}
    backend = backend_for(files.base)
    with pytest.raises(StepError, match="cannot add a LoRA from its config: .*no_such_proj"):
        backend.load_adapter(Adapter(name="odd", config=LoraConfig("lora", options)), None)
    assert not getattr(backend.model, "peft_config", None)


def test_set_adapters_one_list_and_weights(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    assert backend.model.active_adapters() == ["b"]
    model, tokenizer = oracle_with(files, "a", "b")
    seen = []
    for weights, by_hand in [
        ({"a": 1.0}, lambda: model.set_adapter("a")),
        ({"a": 1.0, "b": 1.0}, lambda: model.set_adapter(["a", "b"])),
        (
            {"a": 0.5, "b": 0.7},
            lambda: set_weights_and_activate_adapters(model, ["a", "b"], [0.5, 0.7]),
        ),
    ]:
        backend.set_adapters(weights)
        by_hand()
        expected = generate(model, tokenizer, PROMPTS, **GREEDY)
        assert run(backend) == expected, weights
        seen.append(expected)
    assert seen[0] != seen[1] != seen[2] != seen[0]


def test_last_loaded_is_the_only_active(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    backend.set_adapters({"a": 1.0, "b": 1.0})
    load(backend, "c", files.c)  # c wraps other layers than a and b
    assert backend.model.active_adapters() == ["c"]
    assert run(backend) == generate(*oracle_with(files, "c"), PROMPTS, **GREEDY)


def test_weight_one_is_the_plain_adapter(files: SimpleNamespace) -> None:
    expected = generate(*oracle_with(files, "a"), PROMPTS, **GREEDY)
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    backend.set_adapters({"a": 0.5})
    assert run(backend) != expected
    backend.set_adapters({"a": 1.0})  # a scale, not a factor on the last one
    assert run(backend) == expected


def test_weights_add_scaled_deltas(files: SimpleNamespace, tmp_path: Path) -> None:
    """base + 0.5 * delta_a + 0.25 * delta_b, built by scaling lora_B in the files."""
    for name, factor in (("a", 0.5), ("b", 0.25)):
        folder = tmp_path / name
        shutil.copytree(getattr(files, name), folder)
        state = load_file(folder / "adapter_model.safetensors")
        scaled = {k: v * factor if "lora_B" in k else v for k, v in state.items()}
        save_file(scaled, folder / "adapter_model.safetensors")
    model, tokenizer = load_base(files.base)
    model.load_adapter(str(tmp_path / "a"), adapter_name="a")
    model.load_adapter(str(tmp_path / "b"), adapter_name="b")
    model.set_adapter(["a", "b"])
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    backend.set_adapters({"a": 0.5, "b": 0.25})
    ids = tokenizer(list(PROMPTS), padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(backend.model(**ids).logits, model(**ids).logits)
    assert run(backend) == generate(model, tokenizer, PROMPTS, **GREEDY)


def test_disable_is_the_base_and_enable_restores(
    files: SimpleNamespace, base_tokens: list[list[int]]
) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    backend.set_adapters({"a": 1.0})
    with_a = run(backend)
    backend.disable()
    assert run(backend) == base_tokens
    backend.set_adapters({"b": 1.0})  # chooses what enable restores; still the base until then
    assert run(backend) == base_tokens
    backend.enable()
    assert run(backend) == generate(*oracle_with(files, "b"), PROMPTS, **GREEDY)
    backend.set_adapters({"a": 1.0})
    assert run(backend) == with_a


def test_adapter_loaded_while_disabled_stays_off(
    files: SimpleNamespace, base_tokens: list[list[int]]
) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    backend.disable()
    load(backend, "c", files.c)  # wraps k_proj and o_proj, which a left alone
    backend.disable()  # as the interpreter does after a load while disabled
    assert run(backend) == base_tokens
    backend.enable()
    assert run(backend) == generate(*oracle_with(files, "c"), PROMPTS, **GREEDY)


def test_batch_equals_each_prompt_alone(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    assert len({len(backend.tokenizer(p)["input_ids"]) for p in PROMPTS}) == len(PROMPTS)
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    backend.set_adapters({"a": 0.6, "b": 0.9})
    assert run(backend) == [run(backend, (p,))[0] for p in PROMPTS]


def test_adapter_folder_as_model_path(
    files: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(files.base, tmp_path / "models" / "base")
    adapter = tmp_path / "models" / "adapters" / "x"
    shutil.copytree(files.a, adapter)
    set_base_name(adapter, "../../base")
    monkeypatch.chdir(tmp_path)  # from here "../../base" is no model at all
    backend = backend_for(adapter)
    assert backend.model.active_adapters() == ["default"]
    model, tokenizer = load_base(files.base)
    model.load_adapter(str(files.a), adapter_name="default")
    assert run(backend) == generate(model, tokenizer, PROMPTS, **GREEDY)


def test_sampling_is_seeded(files: SimpleNamespace) -> None:
    args = {"do_sample": True, "temperature": 1.5, "top_k": 50, "top_p": 0.95}
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    first = run(backend, seed=5, **args)
    assert run(backend, seed=5, **args) == first
    assert run(backend, seed=6, **args) != first
    model, tokenizer = oracle_with(files, "a")
    assert first == generate(model, tokenizer, PROMPTS, seed=5, **{**GREEDY, **args})


def test_chat_applies_the_template(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    model, tokenizer = load_base(files.base)
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    batch = tokenizer.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        padding=True,
        return_tensors="pt",
        return_dict=True,
    )
    torch.manual_seed(0)
    out = model.generate(**batch, pad_token_id=tokenizer.pad_token_id, **GREEDY)
    new = out[:, batch["input_ids"].shape[1] :].tolist()
    expected = [cut_at_eos(row, tokenizer.eos_token_id) for row in new]
    assert run(backend, chat=True) == expected
    assert expected != run(backend)


def test_a_diffusers_steps_arguments_are_refused(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    step = Generate(PROMPTS, True, 0, of("diffusers", {"num_inference_steps": 2, "width": 64}))
    with pytest.raises(StepError, match=r"^a causal LM takes no num_inference_steps, width$"):
        backend.generate(step)


def test_pickle_refused_unless_allowed(files: SimpleNamespace, tmp_path: Path) -> None:
    shutil.copy(files.a / "adapter_config.json", tmp_path)
    torch.save(load_file(files.a / "adapter_model.safetensors"), tmp_path / "adapter_model.bin")
    backend = backend_for(files.base)
    with pytest.raises(StepError, match="'adapter_model.bin' is a pickled checkpoint"):
        load(backend, "p", tmp_path)
    assert not getattr(backend.model, "peft_config", None)
    load(backend, "p", tmp_path, allow_pickle=True)
    assert run(backend) == generate(*oracle_with(files, "a"), PROMPTS, **GREEDY)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_is_a_step_error(
    files: SimpleNamespace, tmp_path: Path, damage: str
) -> None:
    shutil.copy(files.a / "adapter_config.json", tmp_path)
    good = (files.a / "adapter_model.safetensors").read_bytes()
    bad = b"not a safetensors file" if damage == "garbage" else good[: len(good) // 2]
    (tmp_path / "adapter_model.safetensors").write_bytes(bad)
    backend = backend_for(files.base)
    load(backend, "b", files.b)
    before = run(backend)
    with pytest.raises(StepError, match="not a valid safetensors file"):
        load(backend, "bad", tmp_path)
    assert set(backend.model.peft_config) == {"b"}
    assert run(backend) == before


def test_missing_files_are_step_errors(files: SimpleNamespace, tmp_path: Path) -> None:
    backend = backend_for(files.base)
    with pytest.raises(StepError, match="no adapter_config.json"):
        load(backend, "x", tmp_path)
    shutil.copy(files.a / "adapter_config.json", tmp_path)
    with pytest.raises(StepError, match="no weight file adapter_model.safetensors"):
        load(backend, "x", tmp_path)
    with pytest.raises(StepError, match="holds no file 'other.safetensors'"):
        load(backend, "x", tmp_path, weight_name="other.safetensors")


def test_weights_missing_from_the_file(files: SimpleNamespace, tmp_path: Path) -> None:
    shutil.copy(files.a / "adapter_config.json", tmp_path)
    state = load_file(files.a / "adapter_model.safetensors")
    save_file(
        {k: v for k, v in state.items() if ".layers.1." not in k},
        tmp_path / "adapter_model.safetensors",
    )
    backend = backend_for(files.base)
    message = (
        r"\d+ weights are missing from the file, e.g. \S+layers.1.self_attn.q_proj.lora_A.part"
    )
    with pytest.raises(StepError, match=message):
        load(backend, "part", tmp_path)
    assert not getattr(backend.model, "peft_config", None)


def test_a_name_torch_modules_own_is_refused(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    with pytest.raises(StepError, match="adapter name 'half' is reserved by torch"):
        load(backend, "half", files.a)
    assert not getattr(backend.model, "peft_config", None)


def test_a_second_load_under_a_taken_name_keeps_the_first(files: SimpleNamespace) -> None:
    backend = backend_for(files.base)
    load(backend, "a", files.a)
    with_a = run(backend)
    with pytest.raises(StepError, match="already exists"):
        load(backend, "a", files.b)
    assert set(backend.model.peft_config) == {"a"}
    assert run(backend) == with_a


def test_a_tokenizer_without_pad_pads_with_eos(files: SimpleNamespace, tmp_path: Path) -> None:
    base = shutil.copytree(files.base, tmp_path / "base")
    config = json.loads((base / "tokenizer_config.json").read_text())
    del config["pad_token"]
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    backend = backend_for(base)
    assert backend.tokenizer.pad_token_id == backend.tokenizer.eos_token_id
    load(backend, "a", files.a)
    assert run(backend) == [run(backend, (p,))[0] for p in PROMPTS]
    model, tokenizer = oracle_with(files, "a")
    tokenizer.pad_token = tokenizer.eos_token
    assert run(backend) == generate(model, tokenizer, PROMPTS, **GREEDY)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("small_lora", r"lora_A.wrong.weight is \(4, 32\) in the file but \(4, 64\) in the model"),
    ],
)
def test_wrong_base_leaves_no_ghost(
    files: SimpleNamespace, base_tokens: list[list[int]], wrong: str, message: str
) -> None:
    backend = backend_for(files.base)
    with pytest.raises(StepError, match=message):
        load(backend, "wrong", getattr(files, wrong))
    assert not getattr(backend.model, "peft_config", None)
    assert run(backend) == base_tokens
    load(backend, "a", files.a)
    load(backend, "b", files.b)
    backend.set_adapters({"a": 0.5, "b": 1.0})
    mixed = run(backend)
    with pytest.raises(StepError, match="does not fit the model"):
        load(backend, "wrong", getattr(files, wrong))
    assert set(backend.model.peft_config) == {"a", "b"}
    assert backend.model.active_adapters() == ["a", "b"]
    assert run(backend) == mixed


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_builtins_are_deterministic_and_distinct(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "a").mkdir()
    causal_lm.make_model(tmp_path / "m")
    assert _digests(tmp_path / "m") == _digests(resolve("tiny-causal-lm"))  # a second build
    # In another process with another hash seed: set order must not leak into the files.
    make = (
        "import sys, pathlib, runner.builtin.causal_lm as m;"
        "m.make_lora_a(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    base = resolve("tiny-causal-lm")
    subprocess.run(
        [sys.executable, "-c", make, str(tmp_path / "a"), str(base)], check=True, env=env
    )
    assert _digests(tmp_path / "a") == _digests(resolve("tiny-causal-lm-lora-a"))

    backend = backend_for(base, "builtin:tiny-causal-lm")
    for name in ("a", "b"):
        adapter = resolve(f"tiny-causal-lm-lora-{name}")
        backend.load_adapter(Adapter(name, path=f"builtin:tiny-causal-lm-lora-{name}"), adapter)
    prompts = ("The cat", "xyz")  # a sentence it knows, and nonsense that rambles on
    outputs = {}
    for name in ("a", "b"):
        backend.set_adapters({name: 1.0})
        outputs[name] = run(backend, prompts, max_new_tokens=24)
    backend.disable()
    outputs["base"] = run(backend, prompts, max_new_tokens=24)
    assert outputs["a"] != outputs["b"] != outputs["base"] != outputs["a"]
    # "The cat" stops at </s> before the batch does: its ids end there, as when alone.
    eos = backend.tokenizer.eos_token_id
    assert outputs["base"][0][-1] == eos and len(outputs["base"][0]) < len(outputs["base"][1])
    assert outputs["base"][0] == run(backend, prompts[:1], max_new_tokens=24)[0]

    adapter_as_model = backend_for(resolve("tiny-causal-lm-lora-a"))  # names builtin: base
    assert run(adapter_as_model, prompts, max_new_tokens=24) == outputs["a"]
