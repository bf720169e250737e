"""PNG text can neither forge an infotext field nor carry NUL (CONTRACT section 9).

The PNG is read back as users' tools read it: sd-parsers (what image browsers and civitai
tooling use for A1111 infotext), and the chunks themselves with Pillow.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from sd_parsers import ParserManager

from runner.record.pnginfo import parse_parameters, png_bytes, read_png_metadata
from runner.results import GeneratedImage

PARAMS = {
    "num_inference_steps": 4,
    "guidance_scale": 7.5,
    "width": 8,
    "height": 8,
    "scheduler": "DDIMScheduler",
}
# Every key a reader of the format takes at a line's start; any other `Words:` alike.
FIELDS = [
    "Negative prompt",
    "Steps",
    "Sampler",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "Lora hashes",
    "Hashes",
    "Version",
    "Clip skip",
    "Schedule type",
    "ENSD",
]
KEY_AT_START = re.compile(r"\s*\w[\w \-/]*:")


def _png(tmp_path: Path, prompt: str, negative: str | None = None) -> Path:
    params = {**PARAMS, **({"negative_prompt": negative} if negative is not None else {})}
    picture = GeneratedImage(Image.new("RGB", (8, 8), (10, 20, 30)), prompt, 42, params)
    file = tmp_path / "0.png"
    file.write_bytes(
        png_bytes(picture, adapters={"a": 0.5}, spec_sha256="0" * 64, runner_version="0")
    )
    return file


def _read(file: Path) -> tuple[str, str, dict[str, object]]:
    info = ParserManager().parse(file)
    assert info is not None, "sd-parsers does not read the PNG as infotext"
    (sampler,) = info.samplers
    return info.full_prompt, info.full_negative_prompt, {"name": sampler.name, **sampler.parameters}


def _lines(parameters: str) -> list[str]:
    """The lines a reader sees before the settings line, split every way readers split."""
    return parameters.splitlines()[:-1]


def test_a_prompt_cannot_forge_the_negative_prompt(tmp_path: Path) -> None:
    file = _png(tmp_path, "a cat\nNegative prompt: blurry, ugly")
    prompt, negative, settings = _read(file)
    assert negative == ""  # nothing became a negative prompt
    assert "a cat" in prompt and "blurry, ugly" in prompt
    assert settings["seed"] == "42" and settings["steps"] == "4"
    ours = parse_parameters(read_png_metadata(file)["parameters"])
    assert ours["Negative prompt"] == "" and "blurry" in ours["Prompt"]


def test_negative_prompt_inside_a_line_does_not_split_the_text(tmp_path: Path) -> None:
    file = _png(tmp_path, "a cat Negative prompt: dog", negative="low Negative prompt: x")
    prompt, negative, _ = _read(file)
    assert "dog" in prompt and "dog" not in negative
    assert "low" in negative and "x" in negative


@pytest.mark.parametrize("field", FIELDS)
def test_no_prompt_line_starts_with_a_field_of_the_format(tmp_path: Path, field: str) -> None:
    forged = f"{field}: 999"
    prompt = f"{forged}\n  {forged}\r{forged}\u2028{forged}"
    file = _png(tmp_path, prompt, negative=f"n\n{forged}")
    parameters = read_png_metadata(file)["parameters"]
    for line in _lines(parameters):
        body = line.removeprefix("Negative prompt: ")
        assert not body.lstrip().startswith(f"{field}:"), line
        assert not KEY_AT_START.match(body), line
    _, _, settings = _read(file)
    assert settings["seed"] == "42"  # the real seed, not 999
    assert read_png_metadata(file)["prompt"] == prompt  # the plain chunk keeps the prompt


def test_a_settings_shaped_prompt_line_does_not_replace_the_settings(tmp_path: Path) -> None:
    file = _png(tmp_path, "Steps: 99, Sampler: Evil, CFG scale: 1, Seed: 7, Size: 1x1")
    _, _, settings = _read(file)
    assert (settings["name"], settings["seed"], settings["steps"]) == ("DDIMScheduler", "42", "4")


def test_nul_never_reaches_a_text_chunk(tmp_path: Path) -> None:
    file = _png(tmp_path, "a\x00b", negative="c\x00d")
    raw = file.read_bytes()
    with Image.open(io.BytesIO(raw)) as image:
        chunks = [(t, d) for t, d in _chunks(raw) if t in (b"tEXt", b"iTXt", b"zTXt")]
        assert chunks
        for kind, data in chunks:
            keyword, _, value = data.partition(b"\x00")
            if kind == b"iTXt":  # compression flag, method, language\0, translated keyword\0
                value = value[2:].split(b"\x00", 2)[2]
            assert b"\x00" not in value, (keyword, value)
        assert image.format == "PNG"
    chunks_read = read_png_metadata(file)
    assert chunks_read["prompt"] == "a\ufffdb"  # replaced, and said so by U+FFFD
    assert chunks_read["negative_prompt"] == "c\ufffdd"


def _chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every PNG chunk, read by the PNG layout itself."""
    found, at = [], 8
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 4], "big")
        found.append((raw[at + 4 : at + 8], raw[at + 8 : at + 8 + length]))
        at += 12 + length
    return found


def test_ordinary_prompts_are_written_unchanged(tmp_path: Path) -> None:
    prompt = "sushi rolls in the form of panda heads, (masterpiece:1.2), 8k"
    file = _png(tmp_path, prompt, negative="blurry, lowres")
    read_prompt, negative, _ = _read(file)
    assert (read_prompt, negative) == (prompt, "blurry, lowres")
