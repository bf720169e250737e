"""What the runner reads from folders it did not make itself, and how.

Run directories travel (a colleague sends one, a failed run is resumed on another machine),
so everything a run directory says is hostile input. `run_file` is the one rule for a path
read from one: relative, no `..`, no symlink on the way (each part is lstat'ed), inside the
run, a regular file. Such a file is opened without following a link and without blocking
(a FIFO would hang a plain open), checked to be regular on the open descriptor, then read
within a size limit or hashed in chunks.

Model and adapter folders are the user's, but they may hold links: `inside` is the one rule
for them, a link is followed only while its target stays inside the folder, or inside the
hub cache's own `blobs/` folder of the same repository (huggingface_hub's snapshots link
there).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import RunDirError, printable
from runner.spec import weights
from runner.spec.weights import Weight

MiB = 1 << 20
# Size limits of the records a run directory holds: far above any real run (a manifest of
# 10,000 steps is a few MiB), far below what would exhaust memory.
MANIFEST_LIMIT = 64 * MiB  # manifest.json, resolved.json, SHA256SUMS
JOURNAL_LIMIT = 256 * MiB  # journal.jsonl
CELLS_LIMIT = 256 * MiB  # cells.jsonl, completions.jsonl, a step's other JSON lines
SPEC_LIMIT = 16 * MiB  # spec.yaml
CHUNK = MiB
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
_FLAGS |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePath(RunDirError):
    """A path of a run directory that is not used: WHY says what it is instead of a file."""

    def __init__(self, run_dir: Path, rel: str, why: str, missing: bool = False) -> None:
        self.rel, self.why, self.missing = rel, why, missing
        super().__init__(printable(f"{run_dir}: {rel!r} {why}"))


def rel_problem(rel: object) -> str | None:
    """Why REL cannot name a file inside a run directory, by its spelling alone; else None."""
    if not isinstance(rel, str) or not rel:
        return "is not a relative path"
    if "\x00" in rel or "\\" in rel:
        return "holds a NUL or a backslash"
    if rel.startswith("/") or os.path.isabs(rel):
        return "is an absolute path"
    parts = rel.split("/")
    if ".." in parts:
        return "goes outside the run directory ('..')"
    if any(part in ("", ".") for part in parts):
        return "is not a plain relative path"
    return None


def run_file(run_dir: Path, rel: str) -> Path:
    """RUN_DIR/REL when it names a regular file of the run reached without a symlink; else
    UnsafePath (with `.missing` when there is nothing there)."""
    problem = rel_problem(rel)
    if problem:
        raise UnsafePath(run_dir, str(rel), problem)
    path = run_dir
    parts = rel.split("/")
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise UnsafePath(run_dir, rel, "is missing", missing=True) from None
        except OSError as exc:
            raise UnsafePath(run_dir, rel, f"cannot be read ({exc.strerror})") from None
        last = i == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(run_dir, rel, "is a symlink" if last else "passes a symlink")
        if not last and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(run_dir, rel, "passes something that is not a folder")
        if last and not stat.S_ISREG(st.st_mode):
            raise UnsafePath(run_dir, rel, f"is {_kind(st.st_mode)}, not a regular file")
    return path


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def open_regular(path: Path, follow: bool = False) -> int:
    """A descriptor of PATH opened for reading, never blocking and, unless FOLLOW, never
    following a last symlink; OSError unless it is a regular file."""
    fd = os.open(path, _FLAGS & ~_NOFOLLOW if follow else _FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{path}: {_kind(mode)}, not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_limited(path: Path, limit: int, follow: bool = False) -> bytes:
    """PATH's bytes, a regular file of at most LIMIT bytes; OSError (or ValueError naming the
    limit) otherwise. FOLLOW: a last symlink is followed (a user's own file)."""
    fd = open_regular(path, follow)
    with open(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // MiB} MiB, the limit for this record")
    return data


def read_run_file(run_dir: Path, rel: str, limit: int) -> bytes:
    """The bytes of the record REL of RUN_DIR, by `run_file`'s rule and within LIMIT; one
    RunDirError line naming it otherwise."""
    file = run_file(run_dir, rel)
    try:
        return read_limited(file, limit)
    except OSError as exc:
        raise UnsafePath(run_dir, rel, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UnsafePath(run_dir, rel, f"is {exc}") from None


def sha256_regular(path: Path, follow: bool = False) -> str:
    """Hex sha256 of a regular file, read in chunks; OSError for anything else."""
    with open(open_regular(path, follow), "rb") as f:
        if hasattr(hashlib, "file_digest"):  # 3.11+: reads into one reused buffer
            return hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := f.read(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def sha256_run_file(run_dir: Path, rel: str) -> str:
    """sha256 of REL of RUN_DIR by `run_file`'s rule; UnsafePath otherwise."""
    file = run_file(run_dir, rel)
    try:
        return sha256_regular(file)
    except OSError as exc:
        raise UnsafePath(run_dir, rel, f"cannot be read ({exc.strerror or exc})") from None


def records_text(file: Path) -> str:
    """A JSON-lines record of a run (cells.jsonl, completions.jsonl) as text: a regular file
    within CELLS_LIMIT, in UTF-8; RunDirError naming the file otherwise."""
    try:
        return read_limited(file, CELLS_LIMIT).decode("utf-8")
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{file}: not readable ({exc})") from None


def run_records_text(run_dir: Path, rel: str) -> str:
    """The JSON-lines record REL of RUN_DIR as text, read by the run directory's rule
    (RunDirError for a link, a FIFO, a file past CELLS_LIMIT, or bytes that are no UTF-8)."""
    try:
        return read_run_file(run_dir, rel, CELLS_LIMIT).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{run_dir / rel}: not readable ({exc})") from None


T = TypeVar("T")


def json_lines(file: Path, content: str, build: Callable[[Any], T], what: str) -> list[T]:
    """BUILD of each non-blank JSON line of CONTENT (read from FILE), in order; a line BUILD
    cannot take is a RunDirError naming FILE, the line and WHAT it should have been."""
    found = []
    for number, text in enumerate(content.splitlines(), 1):
        if not text.strip():
            continue
        try:
            found.append(build(json.loads(text)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunDirError(f"{file}:{number}: not {what} ({exc})") from None
    return found


def adapter_weights(value: Any) -> dict[str, Weight] | None:
    """A recorded `adapters` field: name -> weight (a number, or per component), or None
    (none active, or base)."""
    return None if value is None else {str(k): weights.typed(v) for k, v in value.items()}
