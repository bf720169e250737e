"""Oracle tests of the diffusers backend: the same calls written by hand give the same pixels.

Every pipeline here is tiny and random (runner's builtins, made in this session), images are
64x64 and take two denoising steps, so the whole module runs on a laptop CPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from PIL import Image
from safetensors.torch import load_file, save_file

from runner import builtin
from runner.backends.diffusers_backend import DiffusersBackend
from runner.builtin import diffusion
from runner.errors import StepError
from runner.record.pnginfo import parse_parameters, read_png_metadata, save_png
from runner.spec.arguments import TextArguments, of
from runner.spec.types import Adapter, Generate
from runner.spec.types import LoraConfig as SpecLoraConfig

Pipes = Callable[[Path], Any]  # tests/models/conftest.py: pipes(model), a clean pipeline
Backends = Callable[[Path], DiffusersBackend]  # and diffusers_backends(model), a clean backend
PROMPT = "a photo of a cat"
STEPS = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def cache() -> Path:
    """The session's builtin cache (conftest.py), shared with every other test module."""
    return Path(os.environ["XDG_CACHE_HOME"])


@pytest.fixture(scope="module")
def sd(cache: Path) -> Path:
    return builtin.resolve("tiny-sd")


@pytest.fixture(scope="module")
def sdxl(cache: Path) -> Path:
    return builtin.resolve("tiny-sdxl")


def make_lora(base: Path, folder: Path, file: str, seed: int, text_encoder: bool = True) -> Path:
    """A diffusers-format LoRA (rank 2, to_q/to_v) made with peft, saved under `file`."""
    pipe = hand(base)
    layers: dict[str, Any] = {}
    parts = [("unet", ["to_q", "to_v"])] + ([("text_encoder", ["q_proj"])] if text_encoder else [])
    generator = torch.Generator("cpu").manual_seed(seed)
    for component, targets in parts:
        getattr(pipe, component).add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=targets))
        state = get_peft_model_state_dict(getattr(pipe, component))
        state = {k: torch.randn(v.shape, generator=generator) * 0.4 for k, v in state.items()}
        layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(state)
    type(pipe).save_lora_weights(folder, weight_name=file, **layers)
    return folder / file


@pytest.fixture(scope="module")
def styles(sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding several LoRA files, as many hub repositories do."""
    folder = tmp_path_factory.mktemp("styles")
    make_lora(sd, folder, "style_a.safetensors", seed=1)
    make_lora(sd, folder, "style_b.safetensors", seed=2)
    make_lora(sd, folder, "unet_only.safetensors", seed=3, text_encoder=False)
    return folder


def hand(model: Path) -> Any:
    """The base pipeline as a user of diffusers loads it."""
    pipe = DiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: Any, prompts: list[str], seed: int, n: int = 1, **kwargs: Any) -> list[np.ndarray]:
    """The contract's seeding written by hand: image k draws from a CPU generator seed + k."""
    generators = [torch.Generator("cpu").manual_seed(seed + k) for k in range(len(prompts) * n)]
    out = pipe(prompt=prompts, num_images_per_prompt=n, generator=generators, **STEPS, **kwargs)
    return [np.array(image) for image in out.images]


def step(prompts: tuple[str, ...] = (PROMPT,), seed: int = 7, **args: Any) -> Generate:
    return Generate(
        prompts=prompts, batch=len(prompts) > 1, seed=seed, args=of("diffusers", {**STEPS, **args})
    )


def pixels(runner: DiffusersBackend, generate: Generate) -> list[np.ndarray]:
    return [np.array(picture.image) for picture in runner.generate(generate)]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def ad(name: str, path: Path, **kwargs: Any) -> Adapter:
    return Adapter(name=name, path=str(path), **kwargs)


def lora_layers(pipe: Any, name: str) -> int:
    """How many layers of the pipeline hold adapter `name`."""
    return sum(
        isinstance(m, LoraLayer) and name in m.lora_A
        for part in ("unet", "text_encoder", "text_encoder_2")
        if hasattr(pipe, part)
        for m in getattr(pipe, part).modules()
    )


@pytest.fixture(scope="module")
def sd_base(sd: Path) -> list[np.ndarray]:
    return draw(hand(sd), [PROMPT], seed=7)


def test_base_equals_hand_written(
    sd: Path, sd_base: list[np.ndarray], diffusers_backends: Backends
) -> None:
    pictures = diffusers_backends(sd).generate(step())
    assert same([np.array(p.image) for p in pictures], sd_base)
    assert (pictures[0].prompt, pictures[0].seed) == (PROMPT, 7)
    assert pictures[0].params == {
        "negative_prompt": None,
        "num_inference_steps": 2,
        "guidance_scale": 7.5,  # StableDiffusionPipeline's default
        "lora_scale": 1.0,
        "scheduler": "DDIMScheduler",
        "width": 64,
        "height": 64,
    }


def test_load_by_weight_name_from_a_folder_of_several(
    sd: Path, styles: Path, sd_base: list[np.ndarray], pipes: Pipes, diffusers_backends: Backends
) -> None:
    runner = diffusers_backends(sd)
    runner.load_adapter(ad("b", styles, weight_name="style_b.safetensors"), styles)
    oracle = pipes(sd)
    oracle.load_lora_weights(styles, weight_name="style_b.safetensors", adapter_name="b")
    other = pipes(sd)
    other.load_lora_weights(styles, weight_name="style_a.safetensors", adapter_name="a")
    got = pixels(runner, step())
    assert same(got, draw(oracle, [PROMPT], seed=7))
    assert not same(got, draw(other, [PROMPT], seed=7))
    assert not same(got, sd_base)


def test_a_folder_of_several_files_needs_a_weight_name(
    sd: Path, styles: Path, diffusers_backends: Backends
) -> None:
    runner = diffusers_backends(sd)
    with pytest.raises(StepError, match="several weight files"):
        runner.load_adapter(ad("x", styles), styles)
    assert runner.adapters() == set()


def test_kohya_file_loads_through_diffusers_converter(
    sd: Path, sd_base: list[np.ndarray], pipes: Pipes, diffusers_backends: Backends
) -> None:
    folder = builtin.resolve("tiny-sd-lora-kohya")
    (file,) = folder.glob("*.safetensors")
    assert next(iter(load_file(file))).startswith("lora_")  # kohya keys, not diffusers'
    runner = diffusers_backends(sd)
    runner.load_adapter(ad("k", folder), folder)
    oracle = pipes(sd)
    oracle.load_lora_weights(folder, weight_name=file.name, adapter_name="k")
    got = pixels(runner, step())
    assert same(got, draw(oracle, [PROMPT], seed=7))
    assert distance(got[0], sd_base[0]) > 2
    # Every module of the file landed: the text encoder's too (none silently dropped).
    downs = sum(key.endswith("lora_down.weight") for key in load_file(file))
    assert lora_layers(runner.pipe, "k") == downs


def test_set_adapters_weights_and_switching(
    sd: Path, styles: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    runner = diffusers_backends(sd)
    for name in ("a", "b"):
        runner.load_adapter(ad(name, styles, weight_name=f"style_{name}.safetensors"), styles)
    oracle = pipes(sd)
    for name in ("a", "b"):
        oracle.load_lora_weights(styles, weight_name=f"style_{name}.safetensors", adapter_name=name)
    only_a = pipes(sd)
    only_a.load_lora_weights(styles, weight_name="style_a.safetensors", adapter_name="a")

    runner.set_adapters({"a": 0.5, "b": 0.7})
    oracle.set_adapters(["a", "b"], adapter_weights=[0.5, 0.7])
    mixed = pixels(runner, step())
    assert same(mixed, draw(oracle, [PROMPT], seed=7))

    runner.set_adapters({"a": 1.0})
    assert same(pixels(runner, step()), draw(only_a, [PROMPT], seed=7))
    runner.set_adapters({"a": 1.0, "b": 0.0})
    assert same(pixels(runner, step()), draw(only_a, [PROMPT], seed=7))
    assert not same(mixed, draw(only_a, [PROMPT], seed=7))


def test_last_loaded_is_the_only_active_adapter(
    sd: Path, styles: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    # diffusers alone leaves the text encoder running `a`: the new LoRA has no layer there.
    runner = diffusers_backends(sd)
    runner.load_adapter(ad("a", styles, weight_name="style_a.safetensors"), styles)
    runner.load_adapter(ad("u", styles, weight_name="unet_only.safetensors"), styles)
    oracle = pipes(sd)
    oracle.load_lora_weights(styles, weight_name="unet_only.safetensors", adapter_name="u")
    assert same(pixels(runner, step()), draw(oracle, [PROMPT], seed=7))


def test_disable_runs_the_base_and_enable_restores(
    sd: Path, styles: Path, sd_base: list[np.ndarray], pipes: Pipes, diffusers_backends: Backends
) -> None:
    runner = diffusers_backends(sd)
    for name in ("a", "b"):
        runner.load_adapter(ad(name, styles, weight_name=f"style_{name}.safetensors"), styles)
    runner.set_adapters({"a": 0.5, "b": 0.7})
    before = pixels(runner, step())
    runner.disable()
    assert same(pixels(runner, step()), sd_base)
    runner.set_adapters({"a": 1.0})  # chooses what enable restores; still the base until then
    assert same(pixels(runner, step()), sd_base)
    runner.enable()
    only_a = pipes(sd)
    only_a.load_lora_weights(styles, weight_name="style_a.safetensors", adapter_name="a")
    assert same(pixels(runner, step()), draw(only_a, [PROMPT], seed=7))
    runner.set_adapters({"a": 0.5, "b": 0.7})
    assert same(pixels(runner, step()), before)


def test_several_images_per_prompt_seed_plus_k(
    sd: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    prompts = ("a photo of a cat", "a red dog")
    pictures = diffusers_backends(sd).generate(step(prompts, seed=10, num_images_per_prompt=2))
    got = [np.array(p.image) for p in pictures]
    assert same(got, draw(pipes(sd), list(prompts), seed=10, n=2))
    assert [(p.prompt, p.seed) for p in pictures] == [
        (prompts[0], 10),
        (prompts[0], 11),
        (prompts[1], 12),
        (prompts[1], 13),
    ]
    # Image k made alone from seed + k is the same picture; not always bit for bit: a batch of
    # four runs other matrix-multiply blocking than a batch of one (at most 1 level in 255 seen).
    alone = pipes(sd)
    for k, image in enumerate(got):
        (single,) = draw(alone, [prompts[k // 2]], seed=10 + k)
        assert np.abs(single.astype(int) - image.astype(int)).max() <= 2
    assert distance(got[0], got[1]) > 2  # the seeds differ, so do the images


@pytest.mark.spoils_pipes  # it draws with a LoRA scale
def test_lora_scale(sd: Path, styles: Path, pipes: Pipes, diffusers_backends: Backends) -> None:
    runner = diffusers_backends(sd)
    runner.load_adapter(ad("a", styles, weight_name="style_a.safetensors"), styles)
    oracle = pipes(sd)
    oracle.load_lora_weights(styles, weight_name="style_a.safetensors", adapter_name="a")
    pictures = runner.generate(step(lora_scale=0.5))
    half = [np.array(p.image) for p in pictures]
    assert same(half, draw(oracle, [PROMPT], seed=7, cross_attention_kwargs={"scale": 0.5}))
    assert not same(half, draw(oracle, [PROMPT], seed=7))
    assert pictures[0].params["lora_scale"] == 0.5


@pytest.mark.spoils_pipes  # it draws with a LoRA scale
def test_sdxl_kohya_and_diffusers_loras(
    sdxl: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    kohya, lora_a = builtin.resolve("tiny-sdxl-lora-kohya"), builtin.resolve("tiny-sdxl-lora-a")
    runner = diffusers_backends(sdxl)
    runner.load_adapter(ad("k", kohya), kohya)
    runner.load_adapter(ad("a", lora_a), lora_a)
    assert {"text_encoder", "text_encoder_2", "unet"} <= set(runner.pipe.get_list_adapters())
    oracle = pipes(sdxl)
    oracle.load_lora_weights(kohya, weight_name="tiny_sdxl_kohya.safetensors", adapter_name="k")
    oracle.load_lora_weights(
        lora_a, weight_name="pytorch_lora_weights.safetensors", adapter_name="a"
    )
    base = draw(pipes(sdxl), [PROMPT], seed=3)

    assert same(pixels(runner, step(seed=3)), draw(oracle, [PROMPT], seed=3))
    runner.set_adapters({"k": 0.6, "a": 0.3})
    oracle.set_adapters(["k", "a"], adapter_weights=[0.6, 0.3])
    pictures = runner.generate(step(seed=3, lora_scale=0.8, negative_prompt="blurry"))
    assert same(
        [np.array(p.image) for p in pictures],
        draw(
            oracle,
            [PROMPT],
            seed=3,
            cross_attention_kwargs={"scale": 0.8},
            negative_prompt="blurry",
        ),
    )
    assert pictures[0].params["guidance_scale"] == 5.0  # StableDiffusionXLPipeline's default
    runner.disable()
    assert same(pixels(runner, step(seed=3)), base)
    # The sgm-named kohya UNet keys all found their diffusers modules.
    (file,) = kohya.glob("*.safetensors")
    assert lora_layers(runner.pipe, "k") == sum(
        k.endswith("lora_down.weight") for k in load_file(file)
    )


def test_a_causal_lm_adapter_is_refused_without_a_ghost(
    sd: Path, tmp_path: Path, sd_base: list[np.ndarray], diffusers_backends: Backends
) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    peft_model = get_peft_model(
        LlamaForCausalLM(config),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    peft_model.save_pretrained(str(tmp_path))
    runner = diffusers_backends(sd)
    with pytest.raises(StepError, match="matches no module of the model"):
        runner.load_adapter(ad("llm", tmp_path), tmp_path)
    assert runner.adapters() == set()
    assert same(pixels(runner, step()), sd_base)


def test_a_lora_for_another_pipeline_is_refused_without_a_ghost(
    sdxl: Path, sd: Path, diffusers_backends: Backends
) -> None:
    runner = diffusers_backends(sdxl)
    lora = builtin.resolve("tiny-sd-lora-a")
    message = (
        r"^does not fit the model \S*tiny-sdxl\S*: 8 weights have other shapes, e.g. "
        r"\S+to_k.lora_A.sd.weight is \(4, 32\) in the file but \(4, 64\) in the model$"
    )
    with pytest.raises(StepError, match=message):
        runner.load_adapter(ad("sd", lora), lora)
    assert runner.adapters() == set()
    fits = builtin.resolve("tiny-sdxl-lora-a")
    runner.load_adapter(ad("sd", fits), fits)  # the name is free again
    assert runner.adapters() == {"sd"}


def test_an_adapter_that_half_loads_leaves_nothing_behind(
    sd: Path, styles: Path, tmp_path: Path, sd_base: list[np.ndarray], diffusers_backends: Backends
) -> None:
    # The UNet takes its part, then the text encoder refuses a tensor of the wrong shape.
    state = load_file(styles / "style_a.safetensors")
    for key in [k for k in state if k.startswith("text_encoder.") and ".down." in k]:
        state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] + 3)
    save_file(state, tmp_path / "broken.safetensors")
    runner = diffusers_backends(sd)
    message = (  # one line, from the report transformers logs for the text encoder
        r"^does not fit the model \S+: 2 weights have other shapes, e.g. "
        r"encoder.layers.\{0, 1\}.self_attn.q_proj.lora_A.broken.weight "
        r"is \(\d+, 35\) in the file but \(\d+, 32\) in the model$"
    )
    with pytest.raises(StepError, match=message):
        runner.load_adapter(ad("broken", tmp_path), tmp_path)
    assert runner.adapters() == set()
    assert lora_layers(runner.pipe, "broken") == 0
    assert same(pixels(runner, step()), sd_base)


def test_pickle_is_refused_unless_allowed(
    sd: Path, styles: Path, tmp_path: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    torch.save(load_file(styles / "style_a.safetensors"), tmp_path / "style_a.bin")
    runner = diffusers_backends(sd)
    with pytest.raises(StepError, match="allow_pickle"):
        runner.load_adapter(ad("p", tmp_path), tmp_path)
    assert runner.adapters() == set()
    runner.load_adapter(ad("p", tmp_path, allow_pickle=True), tmp_path)
    oracle = pipes(sd)
    oracle.load_lora_weights(styles, weight_name="style_a.safetensors", adapter_name="a")
    assert same(pixels(runner, step()), draw(oracle, [PROMPT], seed=7))


def test_refusals(sd: Path, styles: Path, diffusers_backends: Backends) -> None:
    runner = diffusers_backends(sd)
    fresh = Adapter("fresh", config=SpecLoraConfig("lora", {"r": 4}))
    with pytest.raises(StepError, match="config"):
        runner.load_adapter(fresh, None)
    runner.load_adapter(ad("a", styles, weight_name="style_a.safetensors"), styles)
    with pytest.raises(StepError, match="already loaded"):
        runner.load_adapter(ad("a", styles, weight_name="style_b.safetensors"), styles)
    assert runner.adapters() == {"a"}
    with pytest.raises(StepError, match="takes no max_new_tokens"):
        runner.generate(Generate((PROMPT,), False, 7, TextArguments(max_new_tokens=3)))
    with pytest.raises(StepError, match="divisible by 8"):
        runner.generate(step(height=60, width=64))
    with pytest.raises(StepError, match="not the height 32 asked"):
        runner.generate(step(height=32))  # the pipeline would silently draw 64x64
    (small,) = runner.generate(step(height=32, width=48))
    assert small.image.size == (48, 32) and small.params["height"] == 32


def test_png_metadata_round_trips(sd: Path, tmp_path: Path, diffusers_backends: Backends) -> None:
    (picture,) = diffusers_backends(sd).generate(step(negative_prompt="blurry, dark"))
    sha = hashlib.sha256(b"spec").hexdigest()
    adapters = {"3d": 0.7, "cereal": 0.5}
    first, second = tmp_path / "0.png", tmp_path / "again.png"
    save_png(picture, first, adapters=adapters, spec_sha256=sha, runner_version="0.1.0")
    save_png(picture, second, adapters=adapters, spec_sha256=sha, runner_version="0.1.0")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "again.png"]  # no temp left
    assert np.array_equal(np.array(Image.open(first)), np.array(picture.image))

    meta = read_png_metadata(first)
    assert meta["prompt"] == PROMPT and meta["negative_prompt"] == "blurry, dark"
    assert (meta["seed"], meta["steps"], meta["guidance"], meta["size"]) == (
        "7",
        "2",
        "7.5",
        "64x64",
    )
    assert meta["adapters"] == '{"3d": 0.7, "cereal": 0.5}'
    assert (meta["spec_sha256"], meta["runner_version"]) == (sha, "0.1.0")
    assert meta["parameters"] == (
        f"{PROMPT}\nNegative prompt: blurry, dark\n"
        "Steps: 2, Sampler: DDIM, CFG scale: 7.5, Seed: 7, Size: 64x64, "
        'Lora weights: "3d: 0.7, cereal: 0.5", Lora scale: 1.0, Version: runner 0.1.0'
    )
    parsed = parse_parameters(meta["parameters"])
    assert parsed["Prompt"] == PROMPT and parsed["Negative prompt"] == "blurry, dark"
    assert parsed["Lora weights"] == "3d: 0.7, cereal: 0.5" and parsed["Seed"] == "7"

    save_png(picture, first, adapters=None, spec_sha256=sha, runner_version="0.1.0")
    meta = read_png_metadata(first)
    assert meta["adapters"] == "null"
    assert "Lora" not in meta["parameters"]


def test_builtin_loras_change_the_image_each_differently(
    sd: Path, sdxl: Path, diffusers_backends: Backends
) -> None:
    for base, names in [
        (sd, ["tiny-sd-lora-a", "tiny-sd-lora-b", "tiny-sd-lora-kohya"]),
        (sdxl, ["tiny-sdxl-lora-a", "tiny-sdxl-lora-kohya"]),
    ]:
        runner = diffusers_backends(base)
        images = {"base": pixels(runner, step())[0]}
        for name in names:
            folder = builtin.resolve(name)
            assert len(list(folder.glob("*.safetensors"))) == 1
            runner.load_adapter(ad(name, folder), folder)
            images[name] = pixels(runner, step())[0]
        keys = list(images)
        for i, x in enumerate(keys):
            for y in keys[i + 1 :]:
                assert distance(images[x], images[y]) > 3, (x, y)


def sha256s(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_builtins_are_deterministic(cache: Path, tmp_path: Path) -> None:
    for name, entry in diffusion.CATALOG.items():
        again = tmp_path / name
        again.mkdir()
        entry.make(again, builtin.resolve(entry.base) if entry.base else None)
        assert sha256s(again) == sha256s(builtin.resolve(name)), name
        assert entry.family == "diffusers"
        assert entry.kind == ("adapter" if entry.base else "model")


def test_each_image_carries_its_own_negative_prompt(
    sd: Path, tmp_path: Path, pipes: Pipes, diffusers_backends: Backends
) -> None:
    prompts, negatives = ("a cat", "a dog"), ["blurry", "dark, grainy"]
    pictures = diffusers_backends(sd).generate(
        step(prompts, seed=5, negative_prompt=negatives, num_images_per_prompt=2)
    )
    expected = draw(pipes(sd), list(prompts), seed=5, n=2, negative_prompt=negatives)
    assert same([np.array(p.image) for p in pictures], expected)
    for k, picture in enumerate(pictures):
        save_png(
            picture,
            tmp_path / f"{k}.png",
            adapters=None,
            spec_sha256="0" * 64,
            runner_version="test",
        )
        chunks = read_png_metadata(tmp_path / f"{k}.png")
        assert (chunks["prompt"], chunks["negative_prompt"]) == (prompts[k // 2], negatives[k // 2])
        parsed = parse_parameters(chunks["parameters"])
        assert parsed["Negative prompt"] == negatives[k // 2] and parsed["Seed"] == str(5 + k)


def test_a_hub_error_is_told_by_its_root_cause() -> None:
    from runner.backends.diffusers_backend import root_cause

    try:
        try:
            raise ConnectionError("the hub is unreachable\nmore detail")
        except ConnectionError as cause:
            raise OSError("Cannot load model x: see the stacktrace above.") from cause
    except OSError as error:
        assert root_cause(error) == "ConnectionError: the hub is unreachable"
