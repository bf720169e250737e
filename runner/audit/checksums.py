"""A run directory's checksums: SHA256SUMS, and every file checked against it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RunDirError
from runner.record import layout
from runner.record import manifest as m
from runner.record.files import sha256_file
from runner.record.layout import SUMS
from runner.record.rundir import files_under

_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


@dataclass
class VerifyReport:
    """Files of a run that are missing, changed, or not listed in SHA256SUMS."""

    ok: bool
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    checked: int = 0
    unfinished: bool = False  # the process died before it recorded its end
    finished_steps: list[int] = field(default_factory=list)  # of an unfinished run


def safe_path(run_dir: Path, rel: str) -> Path:
    """run_dir/rel, refusing relpaths that leave the run directory."""
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise RunDirError(f"{run_dir}: path outside the run directory: {rel!r}")
    return run_dir / rel


def read_sums(run_dir: Path) -> dict[str, str]:
    """relpath -> sha256 from a run's SHA256SUMS."""
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory")
    try:
        text = (run_dir / SUMS).read_text(encoding="utf-8")
    except OSError as e:
        raise RunDirError(f"{run_dir}: not a run directory (no readable {SUMS})") from e
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _SUM_LINE.fullmatch(line)
        if not match:
            raise RunDirError(f"{run_dir / SUMS}:{number}: not a sha256sum line: {line!r}")
        safe_path(run_dir, match[2])
        sums[match[2]] = match[1]
    return sums


def digest(path: Path) -> str | None:
    """sha256 of a file, or None when it cannot be read as one."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def verify(run_dir: Path) -> VerifyReport:
    """Check every file of a run against SHA256SUMS; files not listed are `extra`.

    A run whose process died has no SHA256SUMS: it is reported unfinished, with the steps
    its journal recorded and their outputs checked against the journal's sha256.
    """
    if run_dir.is_dir() and not (run_dir / SUMS).exists() and (run_dir / layout.MANIFEST).is_file():
        return _unfinished(run_dir)
    sums = read_sums(run_dir)
    on_disk = set(files_under(run_dir)) - {SUMS}
    missing = sorted(p for p in sums if p not in on_disk)
    changed = sorted(p for p in sums if p in on_disk and digest(run_dir / p) != sums[p])
    extra = sorted(on_disk - set(sums))
    ok = not (missing or changed or extra)
    return VerifyReport(ok, missing, changed, extra, checked=len(sums))


def _unfinished(run_dir: Path) -> VerifyReport:
    manifest = m.read(run_dir)
    if manifest.finished:  # it recorded its end, and SHA256SUMS was then removed
        return VerifyReport(False, missing=[SUMS])
    sums = {out.path: out.sha256 for step in manifest.steps for out in step.outputs}
    missing = sorted(p for p in sums if not (run_dir / p).is_file())
    changed = sorted(p for p in sums if p not in missing and digest(run_dir / p) != sums[p])
    finished = [step.index for step in manifest.steps if step.status == "ok"]
    return VerifyReport(
        False, missing, changed, checked=len(sums), unfinished=True, finished_steps=finished
    )


def format_verify(run_dir: Path, report: VerifyReport) -> str:
    """One line when intact, else one line per problem file."""
    if report.unfinished:
        steps = ", ".join(map(str, report.finished_steps)) or "none"
        state = "intact" if not (report.missing or report.changed) else "NOT intact"
        lines = [
            f"{run_dir}: the run did not finish (its process stopped before recording its end);"
            f" finished steps: {steps}; their {report.checked} outputs are {state}"
        ]
        lines += [f"  missing: {p}" for p in report.missing]
        lines += [f"  changed: {p}" for p in report.changed]
        return "\n".join(lines)
    if report.ok:
        return f"{run_dir}: intact ({report.checked} files)"
    lines = [f"{run_dir}: NOT intact"]
    for label, paths in (("missing", report.missing), ("changed", report.changed)):
        lines += [f"  {label}: {p}" for p in paths]
    lines += [f"  extra (not in {SUMS}): {p}" for p in report.extra]
    return "\n".join(lines)
