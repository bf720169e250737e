"""Output by output, how two runs compare: text by tokens, images by pixels."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from runner.record.manifest import Manifest, read
from runner.record.trust import CELLS_LIMIT, UnsafePath, open_regular, read_limited, run_file
from runner.record.trust import sha256_regular as digest


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
    """Fill `diff` from two images: max absolute pixel difference and PSNR."""
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
    except OSError as e:
        diff.status, diff.detail = "differs", f"unreadable: {e}"
        return
    peak = float(np.iinfo(pa.dtype).max) if np.issubdtype(pa.dtype, np.integer) else 1.0
    delta = np.abs(pa.astype(np.float64) - pb.astype(np.float64))
    mse = float(np.mean(delta**2))
    diff.max_diff = float(delta.max()) if delta.size else 0.0
    diff.psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
    if mse:
        diff.status = "differs"
        diff.detail = f"max abs diff {diff.max_diff:g}, PSNR {diff.psnr:.2f} dB"


def compare_outputs(
    run_a: Path, run_b: Path, ma: Manifest | None = None, mb: Manifest | None = None
) -> list[OutputDiff]:
    """Compare every output the two manifests list, file by file, in step order."""
    outs_a, outs_b = (ma or read(run_a)).outputs(), (mb or read(run_b)).outputs()
    diffs = []
    for rel in list(outs_a) + [p for p in outs_b if p not in outs_a]:
        suffix = Path(rel).suffix.lower()
        kind = "text" if suffix == ".jsonl" else "image" if suffix == ".png" else "file"
        diff = OutputDiff(rel, kind, "same", step=outs_a.get(rel, outs_b.get(rel)))
        a, b = _file(run_a, rel, rel in outs_a), _file(run_b, rel, rel in outs_b)
        if isinstance(b, str):
            diff.status, diff.detail = "only_a", _absent("B", b)
        elif isinstance(a, str):
            diff.status, diff.detail = "only_b", _absent("A", a)
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
