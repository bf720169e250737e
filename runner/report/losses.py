"""A train step on the report page: its loss curve as inline SVG (no script, nothing
fetched: the page's CSP holds), the first and last loss, and the adapter's files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from runner.record import layout
from runner.record import manifest as m
from runner.record.trust import read_run_file
from runner.report.markup import e, href

LOSSES_LIMIT = 64 << 20
WIDTH, HEIGHT, PAD = 480, 160, 24


def curve(losses: list[float]) -> str:
    """The losses as a polyline in an SVG of WIDTH x HEIGHT, the highest at the top."""
    finite = [v for v in losses if math.isfinite(v)]
    if not finite:
        return "<p class=muted>no finite loss recorded</p>"
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(losses) - 1, 1)
    points = " ".join(
        f"{PAD + i * step:.1f},{PAD + (high - v) / span * (HEIGHT - 2 * PAD):.1f}"
        for i, v in enumerate(losses)
        if math.isfinite(v)
    )
    return (
        f"<svg class=losses role=img width={WIDTH} height={HEIGHT} "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' xmlns='http://www.w3.org/2000/svg'>"
        f"<title>loss per step: {e(f'{finite[0]:.4g}')} to {e(f'{finite[-1]:.4g}')}</title>"
        f"<polyline fill=none stroke=currentColor stroke-width=1.5 points='{points}'/>"
        f"<text x={PAD} y={PAD - 6} font-size=11>{e(f'{high:.4g}')}</text>"
        f"<text x={PAD} y={HEIGHT - 6} font-size=11>{e(f'{low:.4g}')}</text></svg>"
    )


def section(run_dir: Path, step: m.StepRecord) -> str:
    found = [o.path for o in step.outputs if Path(o.path).name == layout.LOSSES]
    if not found:
        return "<p class=muted>no losses recorded</p>"
    lines = read_run_file(run_dir, found[0], LOSSES_LIMIT).decode().splitlines()
    losses = [float(json.loads(line)["loss"]) for line in lines if line.strip()]
    links = "".join(
        f"<li><a href='{url}'>{e(o.path)}</a></li>"
        if (url := href(o.path))
        else f"<li>{e(o.path)}</li>"
        for o in step.outputs
    )
    told = (
        f"<p>{len(losses)} steps, loss {losses[0]:.4g} &rarr; {losses[-1]:.4g}</p>"
        if losses
        else ""
    )
    return told + curve(losses) + f"<ul>{links}</ul>"
