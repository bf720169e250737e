"""A scoring step on the report page (a score step, or a compare's metrics below its cells):
a table (row x metric, the best of each marked), an inline SVG bar chart per metric (no
script, nothing fetched: the page's CSP holds), and a score step's records behind each row's
numbers in a <details> (a compare's are its cells, shown above)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.record import layout
from runner.record import manifest as m
from runner.record.metrics import METRICS, best
from runner.record.trust import read_run_file
from runner.report.markup import e

CELLS_LIMIT = 64 << 20
BAR_WIDTH = 240


def section(run_dir: Path, step: m.StepRecord) -> str:
    rows = step.scores or []
    if not rows:
        return "<p class=muted>no scores recorded</p>"
    metrics = [k for k in METRICS if any(getattr(r, k) is not None for r in rows)]
    marks = {k: best([getattr(r, k) for r in rows], k) if len(rows) > 1 else set() for k in metrics}
    counts = ["records"] + ["tokens"] * any(r.tokens is not None for r in rows)
    head = "".join(f"<th>{e(k)}</th>" for k in ("row", *counts, *metrics))
    body = []
    for i, row in enumerate(rows):
        cells = [f"<td>{e(row.row)}</td>", *(f"<td>{getattr(row, k)}</td>" for k in counts)]
        for k in metrics:
            value = getattr(row, k)
            text = "-" if value is None else f"{value:.4g}"
            cells.append(
                f"<td><strong>{text} &#9733;</strong></td>" if i in marks[k] else f"<td>{text}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table class=scores><tr>{head}</tr>{''.join(body)}</table>"
    note = "<p class=muted>&#9733; the best of each metric (perplexity: the lowest)</p>"
    charts = "".join(_chart(rows, k) for k in metrics)
    return table + note + charts + _records(run_dir, step, rows)


def _chart(rows: list[m.ScoreRow], metric: str) -> str:
    """Horizontal bars, one per row, scaled to the largest magnitude."""
    values = [getattr(r, metric) for r in rows]
    top = max((abs(v) for v in values if v is not None), default=0.0) or 1.0
    line, label_w = 18, 150
    height = line * len(rows) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + BAR_WIDTH + 80}" '
        f'height="{height}" aria-label="{e(metric)} per row">',
        f'<text x="0" y="14" font-size="12" font-weight="bold">{e(metric)}</text>',
    ]
    for n, (row, value) in enumerate(zip(rows, values, strict=True)):
        y = 22 + n * line
        width = 0 if value is None else round(BAR_WIDTH * abs(value) / top, 1)
        shown = "-" if value is None else f"{value:.4g}"
        parts.append(f'<text x="0" y="{y + 12}" font-size="11">{e(row.row[:24])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{width}" height="{line - 6}" fill="#4a7bd0">'
            f"<title>{e(row.row)}: {shown}</title></rect>"
        )
        parts.append(f'<text x="{label_w + width + 4}" y="{y + 12}" font-size="11">{shown}</text>')
    parts.append("</svg>")
    return "<figure class=chart>" + "".join(parts) + "</figure>"


def _records(run_dir: Path, step: m.StepRecord, rows: list[m.ScoreRow]) -> str:
    """Each row's records (scores.jsonl), on request."""
    files = [o.path for o in step.outputs if o.path.endswith("/" + layout.SCORES)]
    if not files:
        return ""
    cells: list[dict[str, Any]] = [
        json.loads(line)
        for line in read_run_file(run_dir, files[0], CELLS_LIMIT).decode("utf-8").splitlines()
        if line.strip()
    ]
    out = []
    for row in rows:
        mine = [c for c in cells if c.get("row") == row.row]
        keys = ["record", "loglik", "tokens", "is_greedy"] + (
            ["label", "acc", "acc_norm"] if mine and "acc" in mine[0] else []
        )
        head = "".join(f"<th>{e(k)}</th>" for k in keys)
        lines = "".join(
            "<tr>" + "".join(f"<td>{e(_fmt(c.get(k)))}</td>" for k in keys) + "</tr>" for c in mine
        )
        out.append(
            f"<details><summary>{e(row.row)}: {len(mine)} records</summary>"
            f"<table class=records><tr>{head}</tr>{lines}</table></details>"
        )
    return "".join(out)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
