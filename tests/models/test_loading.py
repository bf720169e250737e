"""The base model as users configure it, against the same calls written by hand.

A scheduler by name (the model's, and one step's own), components left out of a pipeline
(a tiny Stable Diffusion 3 with and without its T5 encoder, built here), and the attention
implementation of a causal LM: the runner must give the pixels and tokens of
`SchedulerClass.from_config(pipe.scheduler.config, ...)`, `from_pretrained(text_encoder_3=None)`
and `from_pretrained(attn_implementation=...)`, record them, and fail in one line where
they cannot be honoured.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from commands import invoke
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
)

from runner import builtin
from runner.backends import scheduling
from runner.backends.diffusers_backend import DiffusersBackend
from runner.backends.transformers_backend import TransformersBackend
from runner.errors import StepError
from runner.record import manifest as m
from runner.record.pnginfo import parse_parameters, read_png_metadata
from runner.spec.arguments import ImageArguments, TextArguments
from runner.spec.schedulers import SCHEDULERS
from runner.spec.types import Generate, Model, Scheduler

PROMPT = "a red cat"


def run_spec(folder: Path, text: str, name: str = "spec.yaml") -> tuple[int, str, str]:
    spec = folder / name
    spec.write_text(text)
    return invoke("run", str(spec), "--out", str(folder / "runs"))


def error(stderr: str) -> str:
    """The one error line of a failed run (stderr also says where what finished is kept)."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return line


def images(run: Path, step: str) -> list[np.ndarray]:
    files = sorted((run / "outputs" / step).glob("*.png"), key=lambda p: int(p.stem))
    return [np.asarray(Image.open(f)) for f in files]


def draw(pipe: Any, seed: int = 0, **kwargs: Any) -> list[np.ndarray]:
    """The contract's seeding written by hand: image k draws from a CPU generator seed + k."""
    generator = [torch.Generator("cpu").manual_seed(seed)]
    out = pipe(prompt=[PROMPT], generator=generator, num_inference_steps=2, **kwargs)
    return [np.asarray(image) for image in out.images]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def hand(folder: Path, **kwargs: Any) -> Any:
    """A pipeline as a user of diffusers loads it."""
    pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- the scheduler list ---------------------------------------------------------------


def test_the_schema_lists_exactly_the_schedulers_diffusers_has() -> None:
    assert list(SCHEDULERS) == scheduling.scheduler_classes()
    # `type` names the class; no scheduler has a config key of that name to shadow
    for name in SCHEDULERS:
        cls = getattr(__import__("diffusers.schedulers").schedulers, name)
        if isinstance(cls, type):
            assert "type" not in scheduling.parameters(cls), name


# --- schedulers: the model's and a step's own ------------------------------------------

SAMPLERS_SPEC = """\
version: 1
name: samplers
device: cpu
model:
  family: diffusers
  path: builtin:tiny-sd
  scheduler:
    type: DPMSolverMultistepScheduler
    use_karras_sigmas: true
defaults:
  generate: {{prompt: "{prompt}", num_inference_steps: 2}}
steps:
  - op: generate
    id: karras
  - op: generate
    id: euler-a
    scheduler: {{type: EulerAncestralDiscreteScheduler}}
  - op: generate
    id: back
"""


@pytest.fixture(scope="module")
def samplers_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samplers")
    code, out, err = run_spec(folder, SAMPLERS_SPEC.format(prompt=PROMPT))
    assert code == 0, err
    return Path(out.strip())


def test_model_and_step_schedulers_give_the_pixels_of_hand_written_calls(
    samplers_run: Path,
) -> None:
    pipe = hand(builtin.resolve("tiny-sd"))
    own = pipe.scheduler  # DDIMScheduler, as the pipeline was saved
    plain = draw(pipe)
    pipe.scheduler = karras = DPMSolverMultistepScheduler.from_config(
        own.config, use_karras_sigmas=True
    )
    expected = {"01-karras": draw(pipe)}
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(own.config)
    expected["02-euler-a"] = draw(pipe)
    pipe.scheduler = karras
    expected["03-back"] = draw(pipe)

    for step, pixels in expected.items():
        assert same(images(samplers_run, step), pixels), step
    assert same(expected["01-karras"], expected["03-back"])  # the model's scheduler came back
    assert not same(expected["01-karras"], plain)  # ... and it is not the pipeline's own
    assert not same(expected["01-karras"], expected["02-euler-a"])


def test_the_schedulers_are_recorded_and_named_in_png_provenance(samplers_run: Path) -> None:
    manifest = m.read(samplers_run)
    assert manifest.model_setup is not None
    scheduler = manifest.model_setup.scheduler
    assert scheduler is not None
    assert (scheduler.type, scheduler.sampler) == ("DPMSolverMultistepScheduler", "DPM++ 2M Karras")
    own = hand(builtin.resolve("tiny-sd")).scheduler.config
    built = DPMSolverMultistepScheduler.from_config(own, use_karras_sigmas=True)
    # the full config: the pipeline's own values, the override, and the class's defaults
    assert scheduler.config["use_karras_sigmas"] is True
    assert scheduler.config["beta_schedule"] == own["beta_schedule"] == "scaled_linear"
    assert scheduler.config["lambda_min_clipped"] == "-inf"  # standard JSON
    assert set(scheduler.config) == set(scheduling.parameters(DPMSolverMultistepScheduler))
    finite = {k: v for k, v in scheduler.config.items() if k != "lambda_min_clipped"}
    assert finite == {k: built.config[k] for k in finite}
    assert manifest.model_setup.components_left_out == []

    steps = {s.id: s for s in manifest.steps}
    assert steps["karras"].scheduler is None and steps["back"].scheduler is None
    own_step = steps["euler-a"].scheduler
    assert own_step is not None
    assert (own_step.type, own_step.sampler) == ("EulerAncestralDiscreteScheduler", "Euler a")
    assert own_step.config["beta_schedule"] == "scaled_linear"  # from the pipeline's own

    samplers = {
        step: parse_parameters(
            read_png_metadata(samplers_run / "outputs" / step / "0.png")["parameters"]
        )["Sampler"]
        for step in ("01-karras", "02-euler-a", "03-back")
    }
    assert samplers == {
        "01-karras": "DPM++ 2M Karras",
        "02-euler-a": "Euler a",
        "03-back": "DPM++ 2M Karras",
    }
    chunks = read_png_metadata(samplers_run / "outputs" / "02-euler-a" / "0.png")
    assert chunks["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert json.loads(chunks["scheduler_config"]) == own_step.config


def test_reproduce_rebuilds_the_schedulers_and_diff_shows_another(
    samplers_run: Path, tmp_path: Path
) -> None:
    code, out, err = invoke("reproduce", str(samplers_run), "--out", str(tmp_path / "again"))
    assert code == 0, out + err
    assert "every output is identical" in out

    plain = SAMPLERS_SPEC.format(prompt=PROMPT).replace(
        "use_karras_sigmas: true", "euler_at_final: true"
    )
    code, other, err = run_spec(tmp_path, plain.split("  - op: generate\n    id: euler-a")[0])
    assert code == 0, err
    code, report, _ = invoke("diff", str(samplers_run), other.strip())
    assert code == 1
    assert "model scheduler config use_karras_sigmas true -> false" in report
    assert "model scheduler config euler_at_final false -> true" in report


def test_a_scheduler_key_the_class_does_not_take_fails_in_one_line(tmp_path: Path) -> None:
    text = SAMPLERS_SPEC.format(prompt=PROMPT).replace("use_karras_sigmas", "use_karas_sigmas")
    code, _, err = run_spec(tmp_path, text)
    assert code == 1  # refused at validation now, before the model loads (issue 25)
    (line,) = err.strip().splitlines()
    assert line.endswith(
        "model.scheduler.use_karas_sigmas: DPMSolverMultistepScheduler takes no config key "
        "'use_karas_sigmas' (did you mean 'use_karras_sigmas'?)"
    ), line


@pytest.fixture(scope="module")
def sd() -> DiffusersBackend:
    backend = DiffusersBackend("cpu", "float32")
    folder = builtin.resolve("tiny-sd")
    backend.load_model(Model("diffusers", str(folder)), folder)
    backend.pipe.set_progress_bar_config(disable=True)
    return backend


def test_a_step_that_fails_leaves_the_model_scheduler_in_place(sd: DiffusersBackend) -> None:
    model_scheduler = sd.pipe.scheduler
    bad_key = {"type": "EulerDiscreteScheduler", "solver_order": 2}
    with pytest.raises(
        StepError, match=r"^EulerDiscreteScheduler takes no config key 'solver_order'$"
    ):
        sd.generate(Generate((PROMPT,), False, 0, ImageArguments(scheduler=bad_key)))
    # built and swapped in, then the pipeline refuses the call: the model's comes back
    fine = {"type": "EulerDiscreteScheduler"}
    with pytest.raises(StepError, match="divisible by 8"):
        sd.generate(
            Generate((PROMPT,), False, 0, ImageArguments(scheduler=fine, height=60, width=60))
        )
    assert sd.pipe.scheduler is model_scheduler


@pytest.mark.skipif(importlib.util.find_spec("scipy") is not None, reason="scipy is installed")
def test_a_scheduler_that_needs_a_missing_package_says_which() -> None:
    with pytest.raises(StepError) as caught:
        scheduling.build(Scheduler("LMSDiscreteScheduler"), {})
    assert (
        str(caught.value)
        == "LMSDiscreteScheduler needs scipy, which is not installed: pip install scipy"
    )


# --- components left out -----------------------------------------------------------------


def _clip(vocab: int) -> Any:
    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        max_position_embeddings=77,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    return CLIPTextModelWithProjection(config)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny StableDiffusion3Pipeline saved whole (its third encoder a tiny T5) and saved
    without its T5 encoder and tokenizer, as `save_pretrained` writes text_encoder_3=None."""
    root = tmp_path_factory.mktemp("sd3")
    shutil.copytree(builtin.resolve("tiny-sd") / "tokenizer", root / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    vocab = len(tokenizer)
    torch.manual_seed(0)
    parts: dict[str, Any] = {
        "transformer": SD3Transformer2DModel(
            sample_size=32,
            patch_size=1,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            pooled_projection_dim=64,
            out_channels=4,
        ),
        "vae": AutoencoderKL(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(4,),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": _clip(vocab),
        "text_encoder_2": _clip(vocab),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
    }
    t5 = T5EncoderModel(
        T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    )
    whole, without = root / "whole", root / "without-t5"
    StableDiffusion3Pipeline(**parts, text_encoder_3=t5, tokenizer_3=tokenizer).save_pretrained(
        whole
    )
    StableDiffusion3Pipeline(**parts, text_encoder_3=None, tokenizer_3=None).save_pretrained(
        without
    )
    return {"whole": whole, "without": without}


SD3_SPEC = """\
version: 1
device: cpu
model:
  family: diffusers
  path: {path}
{components}steps:
  - op: generate
    prompt: "{prompt}"
    num_inference_steps: 2
    height: 32
    width: 32
"""
LEFT_OUT = "  components: {text_encoder_3: null, tokenizer_3: null}\n"


def test_components_left_out_give_the_pixels_of_from_pretrained_with_none(
    sd3: dict[str, Path], tmp_path: Path
) -> None:
    text = SD3_SPEC.format(path=sd3["whole"], components=LEFT_OUT, prompt=PROMPT)
    code, out, err = run_spec(tmp_path, text)
    assert code == 0, err
    run = Path(out.strip())
    size = {"height": 32, "width": 32}
    pipe = hand(sd3["whole"], text_encoder_3=None, tokenizer_3=None)
    assert pipe.text_encoder_3 is None
    assert same(images(run, "01-generate"), draw(pipe, **size))
    assert not same(images(run, "01-generate"), draw(hand(sd3["whole"]), **size))  # T5 counts
    setup = m.read(run).model_setup
    assert setup is not None and setup.components_left_out == ["text_encoder_3", "tokenizer_3"]
    assert setup.scheduler is not None and setup.scheduler.type == "FlowMatchEulerDiscreteScheduler"


def test_a_pipeline_saved_without_a_component_loads_with_it_left_out(
    sd3: dict[str, Path], tmp_path: Path
) -> None:
    code, _, err = run_spec(
        tmp_path, SD3_SPEC.format(path=sd3["without"], components="", prompt=PROMPT)
    )
    assert code == 2
    assert error(err).endswith(
        "model: StableDiffusion3Pipeline was saved without text_encoder_3, tokenizer_3: leave "
        "them out with model.components: {text_encoder_3: null, tokenizer_3: null}"
    )
    text = SD3_SPEC.format(path=sd3["without"], components=LEFT_OUT, prompt=PROMPT)
    code, out, err = run_spec(tmp_path, text, "left-out.yaml")
    assert code == 0, err
    pipe = hand(sd3["without"], text_encoder_3=None, tokenizer_3=None)
    assert same(images(Path(out.strip()), "01-generate"), draw(pipe, height=32, width=32))


def test_a_component_the_pipeline_needs_fails_its_first_generate_in_one_line() -> None:
    folder = builtin.resolve("tiny-sd")
    backend = DiffusersBackend("cpu", "float32")
    with pytest.raises(StepError) as unknown:
        backend.load_model(Model("diffusers", str(folder), components=("text_encoder_3",)), folder)
    assert str(unknown.value).startswith(
        "StableDiffusionPipeline has no component 'text_encoder_3'; its components: "
        "feature_extractor, image_encoder, safety_checker, scheduler, text_encoder, tokenizer"
    )
    backend.load_model(Model("diffusers", str(folder), components=("text_encoder",)), folder)
    assert backend.pipe.text_encoder is None
    with pytest.raises(StepError) as caught:
        backend.generate(Generate((PROMPT,), False, 0, ImageArguments(num_inference_steps=1)))
    message = str(caught.value)
    assert message.startswith("StableDiffusionPipeline with text_encoder left out: ")
    assert "\n" not in message


# --- attention implementation -------------------------------------------------------------

PROMPTS = ("the quick brown fox", "hello")


def tokens_by_hand(folder: Path, attention: str) -> list[list[int]]:
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    assert model.config._attn_implementation == attention
    batch = tokenizer(list(PROMPTS), padding=True, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **batch, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    eos = tokenizer.eos_token_id
    rows = out[:, batch["input_ids"].shape[1] :].tolist()
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


def test_attn_implementation_gives_the_tokens_of_from_pretrained_with_it() -> None:
    folder = builtin.resolve("tiny-causal-lm")
    step = Generate(PROMPTS, True, 0, TextArguments(max_new_tokens=8, do_sample=False))
    tokens = {}
    for attention in ("eager", "sdpa"):
        backend = TransformersBackend("cpu", "float32")
        backend.load_model(
            Model("transformers", str(folder), attn_implementation=attention), folder
        )
        assert backend.model.config._attn_implementation == attention
        assert backend.setup().attn_implementation == attention
        tokens[attention] = [c.token_ids for c in backend.generate(step)]
        assert tokens[attention] == tokens_by_hand(folder, attention), attention
    assert tokens["eager"] == tokens["sdpa"]  # on this model, in float32, token for token


def test_the_attention_is_recorded_also_for_an_adapter_folder_as_model(tmp_path: Path) -> None:
    adapter = builtin.resolve("tiny-causal-lm-lora-a")
    text = (
        "version: 1\ndevice: cpu\n"
        f"model: {{family: transformers, path: {adapter}, attn_implementation: eager}}\n"
        "steps: [{op: generate, prompt: hello, max_new_tokens: 2}]\n"
    )
    code, out, err = run_spec(tmp_path, text)
    assert code == 0, err
    setup = m.read(Path(out.strip())).model_setup
    assert setup is not None and setup.attn_implementation == "eager"
    # left out, the manifest says what transformers chose
    code, out, err = run_spec(tmp_path, text.replace(", attn_implementation: eager", ""), "b.yaml")
    assert code == 0, err
    chosen = AutoModelForCausalLM.from_pretrained(builtin.resolve("tiny-causal-lm"))
    setup = m.read(Path(out.strip())).model_setup
    assert setup is not None and setup.attn_implementation == chosen.config._attn_implementation


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available(),
    reason="flash-attn can run here",
)
def test_flash_attention_2_where_it_cannot_run_is_one_line(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "model: {family: transformers, path: builtin:tiny-causal-lm, "
        "attn_implementation: flash_attention_2}\n"
        "steps: [{op: generate, prompt: hello, max_new_tokens: 2}]\n"
    )
    code, _, err = run_spec(tmp_path, text)
    assert code == 2
    assert "model: attn_implementation flash_attention_2 cannot be used here: " in error(err)
