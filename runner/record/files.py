"""Files as the run writes them: whole or not at all, and their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CHUNK = 1 << 20
PARTIAL = ".partial"  # a file being written; an interrupt can leave one behind


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content; never cached."""
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):  # 3.11+: reads into one reused buffer
            return hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := f.read(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> str:
    """Write DATA to PATH through a temporary file and a rename; return its sha256.

    Readers never see half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run directories are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_bytes(data)
