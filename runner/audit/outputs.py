"""Output by output, how two runs compare: text by tokens, images by pixels and text chunks,
a compare step's cells by row, prompt, seed and image with every field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import printable
from runner.record.layout import CELLS, LOSSES
from runner.record.manifest import Manifest, read
from runner.record.trust import CELLS_LIMIT, UnsafePath, open_regular, read_limited, run_file
from runner.record.trust import sha256_regular as digest

MAX_CELLS_SHOWN = 20  # differing cells named one by one; the rest are counted


@dataclass
class OutputDiff:
    """How one output file of run A compares with the same file of run B."""

    path: str  # relative to the run directory, e.g. outputs/02-x/completions.jsonl
    kind: str  # "text" | "image" | "file"
    status: str  # "same" | "differs" | "only_a" | "only_b"
    detail: str = ""
    step: int | None = None
    prompt: int | None = None  # text: first prompt whose tokens differ
    token: int | None = None  # text: first differing token position in that prompt
    max_diff: float | None = None  # image: largest absolute pixel difference
    psnr: float | None = None  # image: dB, inf when identical
    cells: list[str] = field(default_factory=list)  # compare: the first differing cells, named
    cells_differing: int = 0  # compare: how many cells differ in all


def compare_text(a: Path, b: Path, diff: OutputDiff) -> None:
    """Fill `diff` from two completions.jsonl files: first differing prompt and token."""
    try:
        rows_a, rows_b = (
            [
                json.loads(line)
                for line in read_limited(p, CELLS_LIMIT).decode("utf-8").splitlines()
                if line
            ]
            for p in (a, b)
        )
    except (OSError, ValueError, RecursionError) as e:
        diff.status, diff.detail = "differs", f"unreadable: {e}"
        return
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=False)):
        ta, tb = list(ra.get("token_ids") or []), list(rb.get("token_ids") or [])
        if ta != tb:
            j = next((k for k, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), None)
            j = min(len(ta), len(tb)) if j is None else j
            diff.status, diff.prompt, diff.token = "differs", i, j
            diff.detail = f"prompt {i}: tokens differ from position {j}"
            if ra.get("prompt") != rb.get("prompt"):
                diff.detail += " (the prompts differ too)"
            return
        if ra.get("text") != rb.get("text"):
            diff.status, diff.prompt = "differs", i
            diff.detail = f"prompt {i}: same tokens, different text"
            return
    if len(rows_a) != len(rows_b):
        diff.status, diff.prompt = "differs", min(len(rows_a), len(rows_b))
        diff.detail = f"{len(rows_a)} completions -> {len(rows_b)}"


def compare_image(a: Path, b: Path, diff: OutputDiff) -> None:
    """Fill `diff` from two images: max absolute pixel difference and PSNR, then the PNG
    text chunks (prompt, seed, adapters, infotext...) key by key."""
    import numpy as np
    from PIL import Image

    try:
        with (
            open(open_regular(a), "rb") as fa,
            open(open_regular(b), "rb") as fb,
            Image.open(fa) as ia,
            Image.open(fb) as ib,
        ):
            if ia.size != ib.size:
                diff.status = "differs"
                diff.detail = "size {}x{} -> {}x{}".format(*ia.size, *ib.size)
                return
            mode = ia.mode if ia.mode == ib.mode else "RGBA"
            pa, pb = (np.asarray(i if i.mode == mode else i.convert(mode)) for i in (ia, ib))
            ta, tb = (dict(getattr(i, "text", {}) or {}) for i in (ia, ib))
    except (OSError, ValueError) as e:
        diff.status, diff.detail = "differs", f"unreadable: {e}"
        return
    peak = float(np.iinfo(pa.dtype).max) if np.issubdtype(pa.dtype, np.integer) else 1.0
    delta = np.abs(pa.astype(np.float64) - pb.astype(np.float64))
    mse = float(np.mean(delta**2))
    diff.max_diff = float(delta.max()) if delta.size else 0.0
    diff.psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
    details = []
    if mse:
        details.append(f"max abs diff {diff.max_diff:g}, PSNR {diff.psnr:.2f} dB")
    chunks = sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))
    if chunks:
        details.append(f"PNG text {', '.join(printable(str(k)) for k in chunks)} differ")
    if details:
        diff.status, diff.detail = "differs", "; ".join(details)


Key = tuple[str, str, Any, int]


def _cells(file: Path) -> dict[Key, dict[str, Any]]:
    """A cells.jsonl by (row, prompt, seed, image of that cell), each with every field."""
    found: dict[Key, dict[str, Any]] = {}
    text_of = read_limited(file, CELLS_LIMIT).decode("utf-8")
    for number, text in enumerate(text_of.splitlines(), 1):
        if not text.strip():
            continue
        cell = json.loads(text)
        if not isinstance(cell, dict):
            raise ValueError(f"line {number} is no JSON object")
        head = (str(cell.get("row")), str(cell.get("prompt")), cell.get("seed"))
        image = sum(1 for key in found if key[:3] == head)
        found[(*head, image)] = cell
    return found


def _named(key: Key) -> str:
    row, prompt, seed, image = key
    shown = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    tail = f" / image {image}" if image else ""
    quoted = json.dumps(shown, ensure_ascii=False)
    return printable(f"row {row} / prompt {quoted} / seed {seed}{tail}")


def _picture(run: Path, folder: str, cell: dict[str, Any]) -> Path | None:
    name = cell.get("image")
    if not isinstance(name, str) or "/" in name:
        return None
    try:
        return run_file(run, f"{folder}/{name}")
    except UnsafePath:
        return None


def compare_cells(
    run_a: Path, run_b: Path, rel: str, diff: OutputDiff, shown: int = MAX_CELLS_SHOWN
) -> None:
    """Fill `diff` from two compare steps' cells.jsonl: cell by cell, matched by row, prompt,
    seed and image, every field and (for images) the PNG's pixels and text chunks."""
    folder = rel.rpartition("/")[0]
    try:
        a, b = _cells(run_file(run_a, rel)), _cells(run_file(run_b, rel))
    except (OSError, ValueError, UnsafePath) as e:
        diff.status, diff.detail = "differs", f"unreadable: {e}"
        return
    lines = []
    for key in list(a) + [k for k in b if k not in a]:
        ca, cb = a.get(key), b.get(key)
        if ca is None or cb is None:
            lines.append(f"{_named(key)}: only in {'A' if cb is None else 'B'}")
            continue
        fields = sorted(k for k in set(ca) | set(cb) if k != "image" and ca.get(k) != cb.get(k))
        what = [f"{', '.join(printable(str(f)) for f in fields)} differ"] if fields else []
        if "image" in ca or "image" in cb:
            pa, pb = _picture(run_a, folder, ca), _picture(run_b, folder, cb)
            if pa is None or pb is None:
                what.append("image missing from " + ("A" if pa is None else "B"))
            else:
                pictured = OutputDiff(rel, "image", "same")
                compare_image(pa, pb, pictured)
                if pictured.status != "same":
                    what.append(f"image: {pictured.detail}")
        if what:
            lines.append(f"{_named(key)}: {'; '.join(what)}")
    if lines:
        diff.status, diff.cells_differing, diff.cells = "differs", len(lines), lines[:shown]
        diff.detail = f"{len(lines)} of {len(set(a) | set(b))} cells differ"


def compare_outputs(
    run_a: Path, run_b: Path, ma: Manifest | None = None, mb: Manifest | None = None
) -> list[OutputDiff]:
    """Compare every output the two manifests list, file by file, in step order."""
    outs_a, outs_b = (ma or read(run_a)).outputs(), (mb or read(run_b)).outputs()
    diffs = []
    for rel in list(outs_a) + [p for p in outs_b if p not in outs_a]:
        suffix = Path(rel).suffix.lower()
        text = suffix == ".jsonl" and Path(rel).name != LOSSES  # a train's losses: bytes
        kind = "text" if text else "image" if suffix == ".png" else "file"
        diff = OutputDiff(rel, kind, "same", step=outs_a.get(rel, outs_b.get(rel)))
        a, b = _file(run_a, rel, rel in outs_a), _file(run_b, rel, rel in outs_b)
        if isinstance(b, str):
            diff.status, diff.detail = "only_a", _absent("B", b)
        elif isinstance(a, str):
            diff.status, diff.detail = "only_b", _absent("A", a)
        elif Path(rel).name == CELLS:
            compare_cells(run_a, run_b, rel, diff)
        elif kind == "text":
            compare_text(a, b, diff)
        elif kind == "image":
            compare_image(a, b, diff)
        elif not _same_bytes(a, b):
            diff.status, diff.detail = "differs", "content differs"
        diffs.append(diff)
    return diffs


def _file(run: Path, rel: str, listed: bool) -> Path | str:
    """The output REL of RUN by the run directory's rule, or why it is not there."""
    if not listed:
        return "missing"
    try:
        return run_file(run, rel)
    except UnsafePath as exc:
        return "missing" if exc.missing else exc.why


def _absent(run: str, why: str) -> str:
    return f"missing from {run}" if why == "missing" else f"{run}: {why}"


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return digest(a) == digest(b)
    except OSError:
        return False
