"""The run directory: created once, written file by file, each file whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner.record.identity import sha256_file

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
PARTIAL = ".partial"  # a file being written; an interrupt can leave one behind


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_atomic(path: Path, data: bytes) -> None:
    """Write DATA to PATH through a temporary file and a rename: readers never see half a file."""
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


def to_json(value: Any) -> bytes:
    """Standard JSON: a NaN or infinity raises rather than write what JSON readers refuse."""
    text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def create(out: Path, name: str, spec_sha256: str) -> Path:
    """Make a new, empty run folder `<name>-<UTC time>-<spec hash>`; never reuse one."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{name}-{stamp}-{spec_sha256[:8]}"
    for n in range(1, 1000):
        candidate = out / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {base} in {out}")


def output_dir(index: int, step_id: str | None) -> str:
    """outputs/NN-ID for the 1-based step INDEX."""
    return f"outputs/{index:02d}-{step_id or 'generate'}"


def write_sums(run: Path) -> None:
    """SHA256SUMS over every other file, sorted, in `sha256sum -c` format.

    A signal can land between creating a temporary file and the `try` that removes it, so
    partial files are swept away first: what is listed is exactly what is there.
    """
    for partial in run.rglob(f".*{PARTIAL}"):
        partial.unlink(missing_ok=True)
    lines = []
    for file in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = file.relative_to(run).as_posix()
        if rel != SUMS:
            lines.append(f"{sha256_file(file)}  {rel}\n")
    write_atomic(run / SUMS, "".join(lines).encode("utf-8"))
