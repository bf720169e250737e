"""One section of the report page per step: what it did and what it made."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import RunDirError
from runner.record import cells as c
from runner.record import completions, layout
from runner.record import manifest as m
from runner.record.trust import run_file
from runner.report import losses, scores
from runner.report.markup import e, href, image
from runner.report.pixels import small_images
from runner.report.ran_with import ran_with
from runner.spec import weights
from runner.spec.values import is_int
from runner.spec.weights import Weight


def step_section(run_dir: Path, step: m.StepRecord) -> str:
    head = (
        f"<h2>{step.index} &middot; {e(step.op)}"
        + (f" <code>{e(step.id)}</code>" if step.id else "")
        + f" <small>line {step.line} &middot; {step.seconds:.2f} s"
        + (f" &middot; peak {e(_peak(step.memory))}" if step.memory else "")
        + (f" &middot; {e(step.status)}" if step.status != "ok" else "")
        + "</small></h2>"
    )
    try:
        if step.status != "ok":  # it made nothing the record lists, and left no state to show
            body = f"<p class=why>This step did not finish: {e(step.status)}.</p>"
        else:
            body = (
                _expectations(step)
                + ran_with(run_dir, step)
                + SECTIONS.get(step.op, _files)(run_dir, step)
            )
            body = f"<div class=crisp>{body}</div>" if small_images(run_dir, step) else body
    except (RunDirError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        body = f"<p class=why>Its outputs could not be read: {e(exc)}</p>"
    status = "" if step.status == "ok" else f" {e(step.status)}"
    return f"<section class='step{status}' id='step-{step.index}'>{head}{body}</section>"


def _expectations(step: m.StepRecord) -> str:
    """The step's `expect:` as checked: each with passed or failed, and its failing cells."""
    if not step.expectations:
        return ""
    items = []
    for r in step.expectations:
        verdict = "<span class=pass>passed</span>" if r.passed else "<span class=noop>failed</span>"
        text = f"<li>{verdict} <code>{e(r.name)}: {e(json.dumps(r.expected))}</code>"
        if r.failing:
            cells = "".join(f"<li>{e(', '.join(_where(f)))}: {e(f.detail)}</li>" for f in r.failing)
            more = r.failing_count - len(r.failing)
            cells += f"<li class=muted>and {more} more</li>" if more > 0 else ""
            text += f" in {r.failing_count}<ul>{cells}</ul>"
        items.append(text + "</li>")
    return f"<p>Expectations:</p><ul class=expect>{''.join(items)}</ul>"


def _where(cell: m.FailedCell) -> list[str]:
    return [
        part
        for part in (
            None if cell.row is None else f"row {cell.row}",
            None if cell.prompt is None else f"prompt {cell.prompt!r}",
            None if cell.seed is None else f"seed {cell.seed}",
        )
        if part
    ]


def adapters_text(adapters: dict[str, Weight] | None) -> str:
    """`none`, `disabled (base model)`, or `a, b=0.5` (weights other than 1 shown)."""
    if adapters is None:
        return "disabled (base model)"
    if not adapters:
        return "none"
    return ", ".join(weights.shown(n, w) for n, w in adapters.items())


def _peak(memory: m.StepMemory) -> str:
    """`RSS 812.3 MiB` (the process's peak during the step), `, CUDA ...` where measured."""
    shown = memory.peak.shown()
    return shown if memory.peak_rss_since == "step" else f"{shown} (RSS: the run's so far)"


def _deleted(run_dir: Path, step: m.StepRecord) -> str:
    """What a delete gave back, from the memory it recorded before and after."""
    memory, text = step.memory, _plain(run_dir, step)
    if memory is None or memory.before is None or memory.after is None:
        return text
    freed = memory.before.minus(memory.after).shown()
    held = f"{memory.before.shown()} before, {memory.after.shown()} after"
    return f"<p>freed {e(freed)} ({e(held)})</p>{text}"


def _after(step: m.StepRecord) -> str:
    return f"<p class=muted>adapters after the step: {e(adapters_text(step.active_adapters))}</p>"


def _plain(run_dir: Path, step: m.StepRecord) -> str:
    shown = step.arguments.get("adapters")
    what = f"<p>adapters: <code>{e(json.dumps(shown))}</code></p>" if shown is not None else ""
    return what + _after(step)


def _files(run_dir: Path, step: m.StepRecord) -> str:
    """A step kind this page does not know: its outputs as links."""
    links = [
        f"<li><a href='{url}'>{e(o.path)}</a></li>"
        if (url := href(o.path))
        else f"<li>{e(o.path)}</li>"
        for o in step.outputs
    ]
    return _after(step) + (f"<ul>{''.join(links)}</ul>" if links else "")


def _generate(run_dir: Path, step: m.StepRecord) -> str:
    texts = [o for o in step.outputs if o.path.endswith(".jsonl")]
    if texts:
        return _completions(completions.read_run(run_dir, texts[0].path), step)
    pngs = [o.path for o in step.outputs if o.path.endswith(".png")]
    prompts = step.arguments.get("prompt")
    prompts = prompts if isinstance(prompts, list) else [prompts]
    per_prompt = step.arguments.get("num_images_per_prompt", 1)
    per_prompt = per_prompt if is_int(per_prompt) and per_prompt > 0 else 1
    shown = adapters_text(step.active_adapters)
    figures = []
    for k, rel in enumerate(pngs):
        prompt = prompts[k // per_prompt] if k // per_prompt < len(prompts) else ""
        figures.append(
            f"<figure>{image(rel, str(prompt))}<figcaption>{e(prompt)} &middot; seed "
            f"{e(_drawn_from(run_dir, rel))} &middot; {e(shown)}</figcaption></figure>"
        )
    return "".join(figures) + _after(step)


def _drawn_from(run_dir: Path, rel: str) -> str:
    """The seed an image was drawn from, as its PNG records it; '?' where it cannot be read."""
    from runner.record.pnginfo import read_png_metadata

    try:
        return read_png_metadata(run_file(run_dir, rel)).get("seed", "?")
    except (OSError, ValueError, RunDirError):
        return "?"


def _completions(items: list[completions.Completed], step: m.StepRecord) -> str:
    rows = []
    for item in items:
        ids = " ".join(map(str, item.token_ids))
        rows.append(
            f"<tr><td class=text>{e(item.prompt)}</td><td>{e(item.seed)}</td>"
            f"<td>{e(adapters_text(item.adapters))}</td>"
            f"<td class=text title='token ids: {e(ids)}'>{e(item.text)}</td></tr>"
        )
    head = "<tr><th>prompt</th><th>seed</th><th>adapters</th><th>completion</th></tr>"
    return f"<div class=scroll><table><thead>{head}</thead>{''.join(rows)}</table></div>"


def _compare(run_dir: Path, step: m.StepRecord) -> str:
    """The cells as a table: a row per setting, a column per prompt and seed."""
    listed = [o.path for o in step.outputs if o.path.endswith("/" + layout.CELLS)]
    if not listed:
        return _after(step)
    folder = listed[0].rsplit("/", 1)[0]
    grid = _rows(c.read_run(run_dir, listed[0]), step.arguments.get("rows"))
    if not grid or not grid[0][1]:
        return "<p class=muted>No cells.</p>"
    head = "".join(
        f"<th title='{e(cell.prompt)}'><span class=clamp>{e(cell.prompt)}</span>"
        f"<span class=muted>seed {e(cell.seed)}</span></th>"
        for cell in grid[0][1]
    )
    noop = {r.row for r in step.rows or [] if r.noop}
    if grid[0][1][0].image is not None:
        written = {o.path for o in step.outputs}
        body = [
            f"<tr><th>{e(label)}{_badge(label, noop)}</th>"
            f"{''.join(_tile(folder, cell, written) for cell in cells)}</tr>"
            for label, cells in grid
        ]
        return _table(_grid_link(step, folder), head, body)
    # The reference row: `base` where the step has one, else the first row.
    ref_label, reference = next(((lb, cs) for lb, cs in grid if cs[0].adapters is None), grid[0])
    note = (
        "<p class=muted>Marked: where a completion first departs from the "
        f"<b>{e(ref_label)}</b> row's. Token ids on hover.</p>"
    )
    body = []
    for label, cells in grid:
        tds = "".join(
            _departure(cell, None if cells is reference else reference[i])
            for i, cell in enumerate(cells)
            if i < len(reference)
        )
        body.append(f"<tr><th>{e(label)}{_badge(label, noop)}</th>{tds}</tr>")
    return _table(note, head, body)


def _table(note: str, head: str, rows_html: list[str]) -> str:
    return (
        f"{note}<div class=scroll><table class=grid><thead><tr><th>adapters</th>{head}</tr>"
        f"</thead><tbody>{''.join(rows_html)}</tbody></table></div>"
    )


def _rows(cells: list[c.CellRecord], labels: Any) -> list[tuple[str, list[c.CellRecord]]]:
    """The cells as rows: the step's row labels where recorded, else runs of one label."""
    if isinstance(labels, list) and labels and len(cells) % len(labels) == 0:
        size = len(cells) // len(labels)
        return [(str(label), cells[i * size : (i + 1) * size]) for i, label in enumerate(labels)]
    grouped: list[tuple[str, list[c.CellRecord]]] = []
    for cell in cells:
        if not grouped or grouped[-1][0] != cell.row:
            grouped.append((cell.row, []))
        grouped[-1][1].append(cell)
    return grouped


def _badge(label: str, noop: set[str]) -> str:
    """A no-op row's badge: every cell equals its base cell."""
    if label not in noop:
        return ""
    return " <span class=noop title='every cell equals its base cell'>no-op</span>"


def _tile(folder: str, cell: c.CellRecord, written: set[str]) -> str:
    name = cell.image or ""
    alt = f"{cell.row} | {cell.prompt} | seed {cell.seed}"
    inner = image(f"{folder}/{name}", alt) if "/" not in name else e(name)
    d = cell.distance
    if d is not None and "mean_abs" in d:
        mean = d["mean_abs"]
        mean = f"{mean:.1f}" if isinstance(mean, int | float) else mean
        shown = f"from base: mean {mean}, max {d['max_abs']}"
        inner += f"<span class=dist>{e(shown)}</span>"
        diff = f"{folder}/{layout.difference(name)}"
        if diff in written and "/" not in name:
            shown = image(diff, f"difference from base: {alt}")
            inner += f"<details><summary>difference</summary>{shown}</details>"
    return f"<td title='{e(alt)}'>{inner}</td>"


def _grid_link(step: m.StepRecord, folder: str) -> str:
    grid = f"{folder}/{layout.GRID}"
    if not any(o.path == grid for o in step.outputs) or (url := href(grid)) is None:
        return ""
    return f"<p><a href='{url}'>grid.png</a>: the same cells as one labelled image.</p>"


def _departure(cell: c.CellRecord, reference: c.CellRecord | None) -> str:
    """A text cell; where it first departs from REFERENCE's text is marked."""
    ids = " ".join(map(str, cell.token_ids or []))
    text = cell.text or ""
    if reference is None:
        return f"<td class=text title='token ids: {e(ids)}'>{e(text)}</td>"
    kl = (cell.distance or {}).get("kl")
    shown_kl = "" if kl is None else f"<span class=dist>kl from base {e(f'{kl:.4g}')}</span>"
    mine, theirs = cell.token_ids or [], reference.token_ids or []
    token = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
    if token is None and len(mine) == len(theirs):
        return f"<td class='text same' title='token ids: {e(ids)}'>{e(text)}{shown_kl}</td>"
    token = min(len(mine), len(theirs)) if token is None else token
    other = reference.text or ""
    at = next((i for i, (a, b) in enumerate(zip(text, other, strict=False)) if a != b), None)
    at = min(len(text), len(other)) if at is None else at
    at = text.rfind(" ", 0, at) + 1 if at < len(text) else at  # from the word it changes
    return (
        f"<td class=text title='token ids: {e(ids)}'>{e(text[:at])}<mark>{e(text[at:])}</mark>"
        f"<span class=at>departs at token {token}</span>{shown_kl}</td>"
    )


def _compare_scored(run_dir: Path, step: m.StepRecord) -> str:
    """A compare's cells, then its metrics where it has some."""
    return _compare(run_dir, step) + (scores.section(run_dir, step) if step.scores else "")


SECTIONS: dict[str, Callable[[Path, m.StepRecord], str]] = {
    "load": _plain,
    "set_adapters": _plain,
    "generate": _generate,
    "compare": _compare_scored,
    "disable": _plain,
    "enable": _plain,
    "score": scores.section,
    "train": losses.section,
    "delete": _deleted,
}
