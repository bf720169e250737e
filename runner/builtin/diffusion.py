"""Builtin diffusers pipelines and LoRAs: tiny, seeded, built from configs, no download.

`tiny-sd` and `tiny-sdxl` are Stable Diffusion (XL) pipelines of random tiny components
that draw 64x64 images; the LoRAs fit them, each in one .safetensors file, some in
diffusers' format and some in the kohya-ss / AUTOMATIC1111 format that diffusers converts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.builtin.entry import Builtin

if TYPE_CHECKING:
    import torch

# Words whose spellings become BPE merges, so common prompt words are single tokens.
_WORDS = (
    "a an the of in on with and photo painting drawing portrait cat dog panda sushi red "
    "green blue cereal box render style city night forest mountain"
).split()
_TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible byte -> printable character table, in CLIP's order."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer(folder: Path) -> int:
    """Write a CLIP BPE tokenizer (vocab.json, merges.txt, ...); return its vocab size."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in _WORDS:
        # Merge left to right: the last symbol carries CLIP's end-of-word mark.
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merge = f"{symbols[0]} {symbols[1]}"
            if merge not in merges:
                merges.append(merge)
                vocab.append(symbols[0] + symbols[1])
            symbols = [symbols[0] + symbols[1], *symbols[2:]]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {token: i for i, token in enumerate(vocab)}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    # from_pretrained on the two files is the check that they form a valid CLIP tokenizer.
    CLIPTokenizer.from_pretrained(folder, model_max_length=77).save_pretrained(folder)
    return len(ids)


def _text_encoder(vocab_size: int, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def make_tiny_sd(folder: Path, base: Path | None = None) -> None:
    """A StableDiffusionPipeline of random tiny components, 64x64 images, no safety checker."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vocab_size = write_tokenizer(folder / "_tokenizer")
    torch.manual_seed(0)
    unet: Any = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = _vae()
    text_encoder = _text_encoder(vocab_size, projection=False)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "_tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    _finish_tokenizer(folder, "tokenizer")


def make_tiny_sdxl(folder: Path, base: Path | None = None) -> None:
    """A StableDiffusionXLPipeline of random tiny components, 64x64 images."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vocab_size = write_tokenizer(folder / "_tokenizer")
    torch.manual_seed(0)
    unet: Any = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + text_encoder_2's 32
        cross_attention_dim=64,  # both text encoders' hidden states, concatenated
    )
    vae = _vae()
    text_encoder = _text_encoder(vocab_size, projection=False)
    text_encoder_2 = _text_encoder(vocab_size, projection=True)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    tokenizer = CLIPTokenizer.from_pretrained(folder / "_tokenizer")
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    _finish_tokenizer(folder, "tokenizer", "tokenizer_2")


def _finish_tokenizer(folder: Path, *names: str) -> None:
    """Keep the hand-written vocab.json/merges.txt beside what save_pretrained wrote."""
    import shutil

    source = folder / "_tokenizer"
    for name in names:
        for file in ("vocab.json", "merges.txt"):
            shutil.copyfile(source / file, folder / name / file)
    shutil.rmtree(source)


def _base_pipeline(base: Path | None) -> Any:
    import warnings

    import torch
    from diffusers import DiffusionPipeline

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        return DiffusionPipeline.from_pretrained(base, torch_dtype=torch.float32)


def _random_like(
    shapes: dict[str, tuple[int, ...]], seed: int, scale: float
) -> dict[str, torch.Tensor]:
    """Seeded normal tensors for every key, drawn in sorted key order."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return {key: torch.randn(shapes[key], generator=generator) * scale for key in sorted(shapes)}


def _diffusers_lora(seed: int) -> Callable[[Path, Path | None], None]:
    """A maker of a LoRA on the UNet and every text encoder, saved by save_lora_weights."""

    def make(folder: Path, base: Path | None) -> None:
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft import LoraConfig, get_peft_model_state_dict

        pipe = _base_pipeline(base)
        layers: dict[str, dict[str, torch.Tensor]] = {}
        encoders = [name for name in ("text_encoder", "text_encoder_2") if hasattr(pipe, name)]
        for offset, component in enumerate(["unet", *encoders]):
            targets = _UNET_TARGETS if component == "unet" else _TE_TARGETS
            model = getattr(pipe, component)
            # peft injects the layers so that its state dict names them as diffusers saves them;
            # the values are then replaced by seeded ones: default init leaves lora_B at zero.
            model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(targets)))
            peft_state = get_peft_model_state_dict(model)
            shapes = {key: tuple(value.shape) for key, value in peft_state.items()}
            values = _random_like(shapes, seed + offset, scale=0.3)
            layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(values)
        type(pipe).save_lora_weights(folder, **layers)

    return make


def _sgm_name(name: str, layers_per_block: int) -> str:
    """A diffusers UNet module path in the original (sgm/LDM) naming kohya-ss uses for SDXL."""
    parts = name.split(".")
    if parts[0] == "mid_block":  # mid_block.attentions.0.REST
        return "middle_block.1." + ".".join(parts[3:])
    block, index = int(parts[1]), int(parts[3])  # {down,up}_blocks.B.attentions.I.REST
    if parts[0] == "down_blocks":  # input_blocks.0 is conv_in; each block adds a downsampler
        head = f"input_blocks.{1 + block * (layers_per_block + 1) + index}.1"
    else:
        head = f"output_blocks.{block * (layers_per_block + 1) + index}.1"
    return head + "." + ".".join(parts[4:])


def _kohya_lora(seed: int, alpha: float, file: str) -> Callable[[Path, Path | None], None]:
    """A maker of a LoRA in the kohya-ss / A1111 key layout, written with safetensors."""

    def make(folder: Path, base: Path | None) -> None:
        import torch
        from safetensors.torch import save_file

        pipe = _base_pipeline(base)
        sdxl = hasattr(pipe, "text_encoder_2")
        modules: dict[str, Any] = {}  # kohya key stem -> torch.nn.Linear
        for name, module in pipe.unet.named_modules():
            if "attentions" in name and name.endswith(_UNET_TARGETS):
                if sdxl:  # kohya-ss trains SDXL on the sgm UNet; diffusers maps it back
                    name = _sgm_name(name, pipe.unet.config.layers_per_block)
                modules["lora_unet_" + name.replace(".", "_")] = module
        encoders = {"lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2"} if sdxl else {}
        for prefix, component in (encoders or {"lora_te_": "text_encoder"}).items():
            for name, module in getattr(pipe, component).named_modules():
                # Newer transformers flatten CLIPTextModel (no `text_model.`); kohya keys keep it.
                name = name.removeprefix("text_model.")
                if name.startswith("encoder.layers.") and name.endswith(
                    (*_TE_TARGETS, "fc1", "fc2")
                ):
                    modules[prefix + "text_model_" + name.replace(".", "_")] = module
        rank = 4
        shapes: dict[str, tuple[int, ...]] = {}
        for key, module in modules.items():
            shapes[f"{key}.lora_down.weight"] = (rank, module.in_features)
            shapes[f"{key}.lora_up.weight"] = (module.out_features, rank)
        tensors = _random_like(shapes, seed, scale=0.3)
        tensors.update({f"{key}.alpha": torch.tensor(alpha) for key in modules})
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, folder / file, {"format": "pt"})

    return make


CATALOG: dict[str, Builtin] = {
    "tiny-sd": Builtin("model", "diffusers", make_tiny_sd),
    "tiny-sdxl": Builtin("model", "diffusers", make_tiny_sdxl),
    "tiny-sd-lora-a": Builtin("adapter", "diffusers", _diffusers_lora(100), "lora", "tiny-sd"),
    "tiny-sd-lora-b": Builtin("adapter", "diffusers", _diffusers_lora(200), "lora", "tiny-sd"),
    "tiny-sd-lora-kohya": Builtin(
        "adapter",
        "diffusers",
        _kohya_lora(300, 2.0, "tiny_sd_kohya.safetensors"),
        "lora",
        "tiny-sd",
    ),
    "tiny-sdxl-lora-a": Builtin("adapter", "diffusers", _diffusers_lora(400), "lora", "tiny-sdxl"),
    "tiny-sdxl-lora-kohya": Builtin(
        "adapter",
        "diffusers",
        _kohya_lora(500, 2.0, "tiny_sdxl_kohya.safetensors"),
        "lora",
        "tiny-sdxl",
    ),
}
