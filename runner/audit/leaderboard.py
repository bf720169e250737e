"""The leaderboard: every scoring step's rows across runs (score steps, and compares with
metrics), read from their manifests alone, as a markdown table, JSON or CSV (`runner scores
RUN_DIR...`). The markdown table shows the metrics some row has."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.record import manifest as m
from runner.record.metrics import METRICS, best


@dataclass(frozen=True)
class Entry:
    """One row of one score step of one run."""

    run: str  # the run directory's name
    step: str  # the step's id, or NN-score
    row: str
    records: int
    tokens: int | None
    loglik: float | None
    perplexity: float | None
    acc: float | None
    acc_norm: float | None
    accuracy: float | None
    clip_score: float | None


def step_name(step: m.StepRecord) -> str:
    return step.id or f"{step.index:02d}-{step.op}"


def entries(run_dirs: list[Path]) -> list[Entry]:
    """Each score step's rows of each run, in the order given, then step, then row."""
    found = []
    for run_dir in run_dirs:
        manifest = m.read(run_dir)
        for step in manifest.steps:
            for row in step.scores or []:
                found.append(
                    Entry(
                        run_dir.name,
                        step_name(step),
                        row.row,
                        row.records,
                        row.tokens,
                        row.loglik,
                        row.perplexity,
                        row.acc,
                        row.acc_norm,
                        row.accuracy,
                        row.clip_score,
                    )
                )
    return found


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(found: list[Entry]) -> str:
    """A markdown table; the best of each metric within a (run, step) in bold."""
    metrics = [k for k in METRICS if any(getattr(e, k) is not None for e in found)]
    head = ["run", "step", "row", "records", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(found):
        groups.setdefault((e.run, e.step), []).append(i)
    bold: set[tuple[int, str]] = set()
    for members in groups.values():
        for metric in metrics:
            marks = best([getattr(found[i], metric) for i in members], metric)
            bold |= {(members[n], metric) for n in marks} if len(members) > 1 else set()
    for i, e in enumerate(found):
        cells = [e.run, e.step, e.row, str(e.records)]
        for metric in metrics:
            text = _shown(getattr(e, metric))
            cells.append(f"**{text}**" if (i, metric) in bold else text)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def as_json(found: list[Entry]) -> str:
    return json.dumps([asdict(e) for e in found], indent=2, ensure_ascii=False)


def as_csv(found: list[Entry]) -> str:
    out = io.StringIO()
    names = list(Entry.__dataclass_fields__)
    writer = csv.DictWriter(out, names, lineterminator="\n")
    writer.writeheader()
    for e in found:
        writer.writerow({k: "" if v is None else v for k, v in asdict(e).items()})
    return out.getvalue()
