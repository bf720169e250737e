"""Remember documents that passed the schema, so running a spec again skips jsonschema.

Schema validity depends on nothing but the document's bytes and the schema's, so a key of
both decides it; importing jsonschema alone costs about 50 ms on every `runner run`.
Meaning checks look at the disk and always run. A cache that cannot be read or written
is simply not used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.meta import cache_home

MAX_BYTES = 1 << 20  # about 16,000 keys; then the file starts over


def cache_file() -> Path:
    return cache_home() / "valid-specs"


def key(schema: str, document: bytes) -> str:
    return hashlib.sha256(schema.encode("utf-8") + b"\0" + document).hexdigest()


def known(digest: str) -> bool:
    try:
        return digest in cache_file().read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return False


def remember(digest: str) -> None:
    file = cache_file()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        if file.is_file() and file.stat().st_size > MAX_BYTES:
            file.unlink()
        with file.open("a", encoding="ascii") as f:  # one short append: atomic enough
            f.write(digest + "\n")
    except OSError:
        pass
