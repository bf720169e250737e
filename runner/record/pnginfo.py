"""PNG files that say how they were made: one text chunk per fact, plus AUTOMATIC1111 infotext.

The `parameters` chunk follows the layout AUTOMATIC1111's web UI writes and reads back
("PNG Info"), so other tools show the prompt, seed and settings; the other chunks hold the
same facts as plain values, and the adapters as JSON, for programs.

Text written into the infotext can never forge a field: a prompt line (or negative prompt
line) that starts with something shaped like a key of the format (`Steps:`, `Negative
prompt:`, any `Words:` as A1111's settings pattern reads a key) starts with U+200B ZERO
WIDTH SPACE instead, and `Negative prompt:` anywhere in the text (sd-parsers splits there)
gets one before its colon. NUL, which a PNG text chunk cannot carry (it ends the keyword),
is written as U+FFFD REPLACEMENT CHARACTER in every chunk. The manifest and cells.jsonl
hold the real prompt.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from PIL.PngImagePlugin import PngImageFile, PngInfo

from runner.record.files import write_atomic
from runner.record.samplers import sampler_name
from runner.spec import weights
from runner.spec.weights import Weight

if TYPE_CHECKING:
    from runner.results import GeneratedImage

# AUTOMATIC1111's pattern for one `Key: value` of the last infotext line; values may be quoted.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# Where a line starts for any reader: str.splitlines()'s breaks, a superset of "\n".
_BREAKS = re.compile("([\n\r\v\f\x1c-\x1e\x85\u2028\u2029])")
# A line that starts with a key of the format (after the whitespace readers strip).
_KEY_START = re.compile("\\s*\\w[\\w \\-/]*\u200b?:")
_HASHES = re.compile(r"(?:,\s*)?Hashes:\s*(\{[^}]*\})")
_INERT = "\u200b"  # zero width space: the key no longer reads as one, the text looks the same
NEGATIVE = "Negative prompt:"


@dataclass(frozen=True)
class Hashes:
    """What A1111 and civitai read to name the model and the LoRAs of an image: the model's
    name and AUTOV2, each adapter's AUTOV2 and (safetensors) AUTOV3."""

    model: str | None = None  # the name A1111's `Model` shows
    model_hash: str | None = None  # AUTOV2 of the checkpoint (or the denoiser's weights)
    adapters: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # autov2, autov3


def _hash_fields(hashes: Hashes, adapters: dict[str, Weight] | None) -> dict[str, Any]:
    """`Model`, `Model hash`, `Lora hashes` ("a: AUTOV3[:12], ...") for the active adapters."""
    v3 = {n: hashes.adapters[n][1] for n in adapters or {} if n in hashes.adapters}
    loras = [f"{n}: {h[:12]}" for n, h in v3.items() if h]
    return {
        "Model hash": hashes.model_hash,
        "Model": hashes.model,
        "Lora hashes": ", ".join(loras) or None,
    }


def _hashes_json(hashes: Hashes, adapters: dict[str, Weight] | None) -> str | None:
    """`Hashes: {"model": AUTOV2, "lora:a": AUTOV2}` as civitai writes it: unquoted JSON."""
    found = {"model": hashes.model_hash} if hashes.model_hash else {}
    for name in adapters or {}:
        if name in hashes.adapters:
            found[f"lora:{name}"] = hashes.adapters[name][0]
    return json.dumps(found, ensure_ascii=True) if found else None


def inert(text: str) -> str:
    """TEXT as infotext may hold it: no line of it starts with a key of the format (such a
    line starts with U+200B), and `Negative prompt:` stands nowhere in it (U+200B goes
    before its colon)."""
    text = text.replace(NEGATIVE, NEGATIVE[:-1] + _INERT + ":")
    parts = _BREAKS.split(text)
    for index in range(0, len(parts), 2):  # lines; the odd parts are the breaks
        if _KEY_START.match(parts[index]):
            parts[index] = _INERT + parts[index]
    return "".join(parts)


def _chunk(value: str) -> str:
    """A text chunk's value as written: NUL would end its keyword, so it becomes U+FFFD."""
    return value.replace("\x00", "\ufffd")


def _quote(value: Any) -> str:
    """AUTOMATIC1111's quoting: JSON-quote a value holding a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _text(value: Any) -> str:
    """A text chunk's value: the text itself, "" for none, JSON for anything else. Writing the
    metadata must never fail, or the images it describes would be lost."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False, allow_nan=False)


def sampler(picture: GeneratedImage) -> str | None:
    """The sampler's usual name (`DPM++ 2M Karras`) where one matches, else its class name."""
    used = picture.scheduler
    if used is None:
        return picture.params.get("scheduler")
    return sampler_name(used.type, used.config) or used.type


def infotext(
    picture: GeneratedImage,
    adapters: dict[str, Weight] | None,
    runner_version: str,
    hashes: Hashes | None = None,
) -> str:
    """The `parameters` text AUTOMATIC1111 writes: prompt, negative prompt, then settings,
    with the model's and the LoRAs' hashes (HASHES) where they are known."""
    params = picture.params
    hashes = hashes or Hashes()
    fields: dict[str, Any] = {
        "Steps": params.get("num_inference_steps"),
        "Sampler": sampler(picture),
        "CFG scale": params.get("guidance_scale"),
        "Seed": picture.seed,
        "Size": f"{params.get('width')}x{params.get('height')}",
        **_hash_fields(hashes, adapters),
        # Not A1111's `<lora:name:weight>` in the prompt, which would change what the prompt says.
        "Lora weights": ", ".join(f"{n}: {weights.written(w)}" for n, w in adapters.items())
        if adapters
        else None,
        "Lora scale": params.get("lora_scale") if adapters else None,
        "Version": f"runner {runner_version}",
    }
    lines = [inert(picture.prompt)]
    if params.get("negative_prompt"):
        lines.append(f"{NEGATIVE} {inert(_text(params['negative_prompt']))}")
    settings = [f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None]
    civitai = _hashes_json(hashes, adapters)
    if civitai is not None:  # hex digests and adapter names: no quote, brace or newline
        settings.insert(len(settings) - 1, f"Hashes: {civitai}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """Read infotext back as AUTOMATIC1111 does: `Prompt`, `Negative prompt`, then each key."""
    *head, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # no settings line: all of it is prompt
        head, last = [*head, last], ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in head:
        if negative or line.startswith("Negative prompt:"):
            negative.append(
                line.removeprefix("Negative prompt:").lstrip() if not negative else line
            )
        else:
            prompt.append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    civitai = _HASHES.search(last)
    if civitai:  # unquoted JSON, as civitai writes it and sd-parsers reads it
        result["Hashes"] = civitai.group(1)
        last = last[: civitai.start()] + last[civitai.end() :]
    for key, value in _PARAM.findall(last):
        result[key] = json.loads(value) if value.startswith('"') else value
    return result


def png_bytes(
    picture: GeneratedImage,
    *,
    adapters: dict[str, Weight] | None,
    spec_sha256: str,
    runner_version: str,
    row: str | None = None,
    hashes: Hashes | None = None,
) -> bytes:
    """The picture as PNG with its provenance; the same picture gives the same bytes.

    `adapters` maps the active adapters to their weights, or is None when they are disabled;
    `row` is the label of the compare row that made it.
    """
    params = picture.params
    chunks = {
        "prompt": picture.prompt,
        "negative_prompt": _text(params.get("negative_prompt")),
        "seed": str(picture.seed),
        "steps": str(params.get("num_inference_steps")),
        "guidance": str(params.get("guidance_scale")),
        "size": f"{params.get('width')}x{params.get('height')}",
        "lora_scale": str(params.get("lora_scale")),
        "adapters": json.dumps(adapters, allow_nan=False),
        **_scheduler_chunks(picture),
        "spec_sha256": spec_sha256,
        "runner_version": runner_version,
        "parameters": infotext(picture, adapters, runner_version, hashes),
    }
    if row is not None:
        chunks["row"] = row
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, _chunk(value))  # falls back to UTF-8 iTXt for text latin-1 cannot hold
    buffer = io.BytesIO()
    # Fixed settings and no timestamp chunk: the same picture gives the same bytes.
    picture.image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def _scheduler_chunks(picture: GeneratedImage) -> dict[str, str]:
    """The scheduler exactly, for programs: its class and its full config as JSON."""
    used = picture.scheduler
    if used is None:
        return {}
    return {
        "scheduler": used.type,
        "scheduler_config": json.dumps(used.config, sort_keys=True, allow_nan=False),
    }


def save_png(picture: GeneratedImage, path: Path, **provenance: Any) -> None:
    """Write `png_bytes(picture, **provenance)` to PATH, whole or not at all."""
    write_atomic(path, png_bytes(picture, **provenance))


def read_png_metadata(path: Path) -> dict[str, str]:
    """Every text chunk of a PNG, by key."""
    with Image.open(path) as image:
        if not isinstance(image, PngImageFile):
            raise ValueError(f"{path} is not a PNG file")
        # `text` reads on to the chunks after the image data too, unlike `info` before load().
        return {key: str(value) for key, value in image.text.items()}
