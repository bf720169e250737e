"""The run directory: created once, written file by file, each file whole or not at all."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from runner.errors import RunDirError, printable
from runner.record.files import PARTIAL, sha256_file, write_atomic
from runner.record.layout import MANIFEST, SUMS
from runner.record.trust import MANIFEST_LIMIT, UnsafePath, read_limited, read_run_file, rel_problem

_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create(out: Path, name: str, spec_sha256: str) -> Path:
    """Make a new, empty run folder `<name>-<UTC time>-<spec hash>`; never reuse one, and
    never inside another run (its SHA256SUMS would no longer hold)."""
    enclosing = enclosing_run(out)
    if enclosing is not None:
        raise RunDirError(
            printable(
                f"out folder {out}: is inside the run directory {enclosing}; a run directory holds"
                " one run (name a folder outside it)"
            )
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"out folder {out}: is a file, not a folder; name a folder") from None
    except NotADirectoryError:
        raise RunDirError(
            f"out folder {out}: a part of this path is a file; name a folder"
        ) from None
    except PermissionError:
        raise RunDirError(
            f"out folder {out}: permission denied; name a folder you can write"
        ) from None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{name}-{stamp}-{spec_sha256[:8]}"
    for n in range(1, 1000):
        candidate = out / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except PermissionError:
            raise RunDirError(
                f"out folder {out}: permission denied; name a folder you can write"
            ) from None
    raise RunDirError(f"out folder {out}: too many runs named {base}")


def enclosing_run(out: Path) -> Path | None:
    """The run directory that OUT is, or lies in, or None: any folder at or above OUT (links
    resolved) holding a runner's manifest.json."""
    here = Path(os.path.realpath(out))
    for folder in (here, *here.parents):
        if _is_run(folder):
            return folder
    return None


def _is_run(folder: Path) -> bool:
    file = folder / MANIFEST
    if not file.is_file():
        return False
    try:
        data = json.loads(read_limited(file, MANIFEST_LIMIT, follow=True))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and {"schema_version", "spec", "runner"} <= data.keys()


def write_sums(run: Path, known: dict[str, str]) -> None:
    """SHA256SUMS over every other file, sorted, in `sha256sum -c` format.

    KNOWN holds the sha256 of files the run wrote itself, so they are not read again. A
    signal can land between creating a temporary file and the `try` that removes it, so
    partial files are swept away: what is listed is exactly what is there.
    """
    lines = []
    for rel in files_under(run):
        file = run / rel
        if rel.rpartition("/")[2].startswith(".") and rel.endswith(PARTIAL):
            file.unlink(missing_ok=True)
        elif rel != SUMS and file.is_file():
            lines.append(f"{known.get(rel) or sha256_file(file)}  {rel}\n")
    write_atomic(run / SUMS, "".join(lines).encode("utf-8"))


def read_sums(run_dir: Path) -> dict[str, str]:
    """relpath -> sha256 from a run's SHA256SUMS."""
    if not run_dir.is_dir():
        raise RunDirError(printable(f"{run_dir}: not a directory"))
    try:
        text = read_run_file(run_dir, SUMS, MANIFEST_LIMIT).decode("utf-8")
    except UnsafePath as exc:
        if exc.missing:
            raise RunDirError(printable(f"{run_dir}: not a run directory (no {SUMS})")) from None
        raise
    except UnicodeDecodeError:
        raise RunDirError(printable(f"{run_dir / SUMS}: not UTF-8 text")) from None
    sums: dict[str, str] = {}
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1] if text.endswith("\n") or not text else lines, 1):
        match = _SUM_LINE.fullmatch(line)
        problem = rel_problem(match[2]) if match else None
        if not match or problem:
            why = problem or "not a sha256sum line"
            raise RunDirError(printable(f"{run_dir / SUMS}:{number}: {why}: {line!r}"))
        sums[match[2]] = match[1]
    return sums


def files_under(run_dir: Path) -> list[str]:
    """Every file under a run directory as a relpath with '/'; a symlinked folder counts as one."""
    found = []
    for top, dirs, files in os.walk(run_dir):
        links = [d for d in dirs if os.path.islink(os.path.join(top, d))]
        folder = os.path.relpath(top, run_dir).replace(os.sep, "/")
        prefix = "" if folder == "." else folder + "/"
        found += [prefix + name for name in files + links]
    return sorted(found)
