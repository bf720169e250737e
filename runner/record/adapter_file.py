"""What an adapter's weight file says about itself: its hashes and its kohya training metadata.

Pure Python (hashlib and the safetensors header, which is JSON): no model library needed.
The hashes are the ones civitai and AUTOMATIC1111 show: `autov2` is the first 10 hex of the
file's sha256, `autov3` the sha256 of a safetensors file's bytes after its header (the
8-byte length and the JSON), which kohya-ss embeds as `sshs_model_hash`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from runner.record import manifest as m

CHUNK = 1 << 20
KOHYA_FIELDS = ("ss_base_model_version", "ss_network_dim", "ss_network_alpha", "ss_resolution")
TOP_TAGS = 10


def header(path: Path) -> tuple[int, dict[str, Any]] | None:
    """(bytes before the tensors, the JSON header) of a safetensors file; None for another."""
    if path.suffix != ".safetensors":
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                return None
            (length,) = struct.unpack("<Q", raw)
            parsed = json.loads(f.read(length))
    except (OSError, ValueError):
        return None
    return (8 + length, parsed) if isinstance(parsed, dict) else None


def metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors file ({} for none or another format)."""
    found = header(path)
    meta = found[1].get("__metadata__") if found else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def hashes(path: Path) -> m.AdapterHashes:
    """sha256, autov2 and (safetensors) autov3 of the file, in one read; the embedded
    `sshs_model_hash` and whether it is the autov3."""
    found = header(path)
    skip = found[0] if found else None
    whole, after = hashlib.sha256(), hashlib.sha256()
    seen = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            whole.update(chunk)
            if skip is not None and seen + len(chunk) > skip:
                after.update(chunk[max(0, skip - seen) :])
            seen += len(chunk)
    digest = whole.hexdigest()
    autov3 = after.hexdigest() if skip is not None else None
    embedded = metadata(path).get("sshs_model_hash")
    return m.AdapterHashes(
        sha256=digest,
        autov2=digest[:10],
        autov3=autov3,
        sshs_model_hash=embedded,
        sshs_model_hash_matches=None if embedded is None else embedded.lower() == autov3,
    )


def kohya(meta: dict[str, str]) -> m.KohyaMetadata | None:
    """The kohya-ss training facts of the metadata, None where it has none of them."""
    fields = {k: meta[k] for k in KOHYA_FIELDS if k in meta}
    tags = top_tags(meta.get("ss_tag_frequency"))
    if not fields and not tags:
        return None
    return m.KohyaMetadata(**fields, top_tags=tags)


def top_tags(raw: str | None) -> list[str]:
    """The ten most frequent tags of `ss_tag_frequency` ({folder: {tag: count}}), summed
    over folders; ties in name order."""
    try:
        folders = json.loads(raw) if raw else {}
    except ValueError:
        return []
    counts: Counter[str] = Counter()
    for tags in folders.values() if isinstance(folders, dict) else ():
        for tag, count in tags.items() if isinstance(tags, dict) else ():
            if isinstance(count, int | float):
                counts[str(tag).strip()] += int(count)
    return [tag for tag, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TAGS]]


def metadata_alpha(meta: dict[str, str]) -> float | None:
    """`ss_network_alpha` as a number, None when absent or not one."""
    try:
        return float(meta["ss_network_alpha"])
    except (KeyError, ValueError):
        return None
