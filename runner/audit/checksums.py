"""A run directory's checksums: SHA256SUMS, and every file checked against it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import printable
from runner.record import layout
from runner.record import manifest as m
from runner.record.layout import SUMS
from runner.record.rundir import files_under, read_sums
from runner.record.trust import UnsafePath
from runner.record.trust import sha256_run_file as _sha256


@dataclass
class VerifyReport:
    """Files of a run that are missing, changed, or not listed in SHA256SUMS."""

    ok: bool
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # listed, but no file: why
    checked: int = 0
    unfinished: bool = False  # the process died before it recorded its end
    finished_steps: list[int] = field(default_factory=list)  # of an unfinished run


def digest(run_dir: Path, rel: str) -> str | None:
    """sha256 of the file REL of a run, or None when it is no regular file of the run."""
    try:
        return _sha256(run_dir, rel)
    except UnsafePath:
        return None


def _check(run_dir: Path, listed: dict[str, str], report: VerifyReport) -> None:
    """Each listed file is missing, refused (no regular file: why), changed or intact."""
    for rel, expected in sorted(listed.items()):
        try:
            found = _sha256(run_dir, rel)
        except UnsafePath as exc:
            if exc.missing:
                report.missing.append(rel)
            else:
                report.refused[rel] = exc.why
            continue
        if found != expected:
            report.changed.append(rel)


def verify(run_dir: Path) -> VerifyReport:
    """Check every file of a run against SHA256SUMS; files not listed are `extra`.

    A run whose process died has no SHA256SUMS: it is reported unfinished, with the steps
    its journal recorded and their outputs checked against the journal's sha256.
    """
    if (
        run_dir.is_dir()
        and not os.path.lexists(run_dir / SUMS)
        and os.path.lexists(run_dir / layout.MANIFEST)
    ):
        return _unfinished(run_dir)
    sums = read_sums(run_dir)
    on_disk = set(files_under(run_dir)) - {SUMS}
    report = VerifyReport(False, extra=sorted(on_disk - set(sums)), checked=len(sums))
    _check(run_dir, sums, report)
    report.ok = not (report.missing or report.changed or report.extra or report.refused)
    return report


def _unfinished(run_dir: Path) -> VerifyReport:
    manifest = m.read(run_dir)
    if manifest.finished:  # it recorded its end, and SHA256SUMS was then removed
        return VerifyReport(False, missing=[SUMS])
    sums = {out.path: out.sha256 for step in manifest.steps for out in step.outputs}
    finished = [step.index for step in manifest.steps if step.status == "ok"]
    report = VerifyReport(False, checked=len(sums), unfinished=True, finished_steps=finished)
    _check(run_dir, sums, report)
    return report


def format_verify(run_dir: Path, report: VerifyReport) -> str:
    """One line when intact, else one line per problem file; every name escaped as error
    lines are, so that a file named with a newline cannot forge a line."""
    problems = [f"  missing: {p}" for p in report.missing]
    problems += [f"  changed: {p}" for p in report.changed]
    problems += [f"  refused: {p}: {why}" for p, why in report.refused.items()]
    problems += [f"  extra (not in {SUMS}): {p}" for p in report.extra]
    if report.unfinished:
        steps = ", ".join(map(str, report.finished_steps)) or "none"
        state = "NOT intact" if problems else "intact"
        head = (
            f"{run_dir}: the run did not finish (its process stopped before recording its end);"
            f" finished steps: {steps}; their {report.checked} outputs are {state}"
        )
    elif report.ok:
        head = f"{run_dir}: intact ({report.checked} files)"
    else:
        head = f"{run_dir}: NOT intact"
    return "\n".join(printable(line) for line in [head, *problems])
