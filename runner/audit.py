"""Checking a run directory against its checksums, and comparing two runs.

Pure Python plus PIL and numpy for pixels; no deep-learning library is imported.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunDirError
from runner.identity import sha256_file

SUMS = "SHA256SUMS"
_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


@dataclass
class VerifyReport:
    """Files of a run that are missing, changed, or not listed in SHA256SUMS."""

    ok: bool
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    checked: int = 0


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


def files_under(run_dir: Path) -> list[str]:
    """Every file under a run directory as a relpath with '/'; a symlinked folder counts as one."""
    found = []
    for top, dirs, files in os.walk(run_dir):
        links = [d for d in dirs if os.path.islink(os.path.join(top, d))]
        found += [Path(top, f).relative_to(run_dir).as_posix() for f in files + links]
    return sorted(found)


def digest(path: Path) -> str | None:
    """sha256 of a file, or None when it cannot be read as one."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def verify(run_dir: Path) -> VerifyReport:
    """Check every file of a run against SHA256SUMS; files not listed are `extra`."""
    sums = read_sums(run_dir)
    on_disk = set(files_under(run_dir)) - {SUMS}
    missing = sorted(p for p in sums if p not in on_disk)
    changed = sorted(p for p in sums if p in on_disk and digest(run_dir / p) != sums[p])
    extra = sorted(on_disk - set(sums))
    ok = not (missing or changed or extra)
    return VerifyReport(ok, missing, changed, extra, checked=len(sums))


def format_verify(run_dir: Path, report: VerifyReport) -> str:
    """One line when intact, else one line per problem file."""
    if report.ok:
        return f"{run_dir}: intact ({report.checked} files)"
    lines = [f"{run_dir}: NOT intact"]
    for label, paths in (("missing", report.missing), ("changed", report.changed)):
        lines += [f"  {label}: {p}" for p in paths]
    lines += [f"  extra (not in {SUMS}): {p}" for p in report.extra]
    return "\n".join(lines)


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """A run's manifest.json as a dict."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"{run_dir}: no readable manifest.json ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("schema_version") != 1:
        raise RunDirError(f"{run_dir}/manifest.json: not a schema_version 1 manifest")
    return manifest


def outputs_of(manifest: dict[str, Any]) -> dict[str, int]:
    """Output relpath -> step index, in the order the manifest lists them."""
    try:
        return {
            str(out["path"]): step.get("index")
            for step in manifest.get("steps") or []
            for out in step.get("outputs") or []
        }
    except (AttributeError, KeyError, TypeError) as e:
        raise RunDirError(f"manifest.json: malformed steps ({e!r})") from e


def compare_text(a: Path, b: Path, diff: OutputDiff) -> None:
    """Fill `diff` from two completions.jsonl files: first differing prompt and token."""
    try:
        rows_a, rows_b = (
            [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
            for p in (a, b)
        )
    except (OSError, ValueError) as e:
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
        with Image.open(a) as ia, Image.open(b) as ib:
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


def compare_outputs(run_a: Path, run_b: Path) -> list[OutputDiff]:
    """Compare every output the two manifests list, file by file, in step order."""
    outs_a, outs_b = outputs_of(load_manifest(run_a)), outputs_of(load_manifest(run_b))
    diffs = []
    for rel in list(outs_a) + [p for p in outs_b if p not in outs_a]:
        suffix = Path(rel).suffix.lower()
        kind = "text" if suffix == ".jsonl" else "image" if suffix == ".png" else "file"
        diff = OutputDiff(rel, kind, "same", step=outs_a.get(rel, outs_b.get(rel)))
        a, b = safe_path(run_a, rel), safe_path(run_b, rel)
        if rel not in outs_b or not b.is_file():
            diff.status, diff.detail = "only_a", "missing from B"
        elif rel not in outs_a or not a.is_file():
            diff.status, diff.detail = "only_b", "missing from A"
        elif kind == "text":
            compare_text(a, b, diff)
        elif kind == "image":
            compare_image(a, b, diff)
        elif (hash_a := digest(a)) is None or hash_a != digest(b):
            diff.status, diff.detail = "differs", "content differs"
        diffs.append(diff)
    return diffs


def show(value: Any, none: str = "none") -> str:
    """A value for a one-line message; long hashes shortened."""
    if value is None:
        return none
    if isinstance(value, str):
        return value[:12] + "…" if re.fullmatch(r"[0-9a-f]{40,64}", value) else value
    return json.dumps(value, sort_keys=True)


def leaves(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Flatten nested dicts to {key path: leaf}."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[tuple[str, ...], Any] = {}
    for key, sub in value.items():
        flat.update(leaves(sub, (*prefix, str(key))))
    return flat


def changed_leaves(a: Any, b: Any) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(key path, a, b) for every leaf that differs; absent counts as None."""
    la, lb = leaves(a), leaves(b)
    keys = list(la) + [k for k in lb if k not in la]
    return [(k, la.get(k), lb.get(k)) for k in keys if la.get(k) != lb.get(k)]


def label(key: tuple[str, ...]) -> str:
    """How a flattened key reads in a message; every thread count reads `threads`."""
    return "threads" if key[-1] in ("threads", "torch_threads") else " ".join(key)


def environment_changes(ma: dict[str, Any], mb: dict[str, Any]) -> list[str]:
    """Library versions, python, platform, CPU, GPU, env vars and runner version."""
    lines = []
    for key, a, b in changed_leaves(ma.get("environment"), mb.get("environment")):
        if key[:1] == ("libraries",) and len(key) == 2:
            lines.append(f"{key[1]} {show(a, 'absent')} -> {show(b, 'absent')}")
        elif key[:1] == ("env",) and len(key) == 2:
            lines.append(f"{key[1]} {show(a, 'unset')} -> {show(b, 'unset')}")
        else:
            lines.append(f"{label(key)} {show(a)} -> {show(b)}")
    for key, a, b in changed_leaves(ma.get("runner"), mb.get("runner")):
        lines.append(f"runner {label(key)} {show(a)} -> {show(b)}")
    return lines


def settings_changes(ma: dict[str, Any], mb: dict[str, Any]) -> list[str]:
    """Device, device name, dtype, seed, threads and deterministic flags."""
    changes = changed_leaves(ma.get("settings"), mb.get("settings"))
    return [f"{label(key)} {show(a)} -> {show(b)}" for key, a, b in changes]


def input_changes(ma: dict[str, Any], mb: dict[str, Any]) -> list[str]:
    """Model and adapter identities: path, revision, and each file's sha256."""
    ia, ib = ma.get("inputs") or {}, mb.get("inputs") or {}
    ada, adb = ia.get("adapters") or {}, ib.get("adapters") or {}
    pairs = [("model", ia.get("model"), ib.get("model"))] + [
        (f"adapter '{n}'", ada.get(n), adb.get(n))
        for n in list(ada) + [n for n in adb if n not in ada]
    ]
    lines = []
    for name, a, b in pairs:
        if a is None or b is None:
            if a != b:
                lines.append(
                    f"{name} {'absent' if a is None else 'declared'} -> "
                    f"{'absent' if b is None else 'declared'}"
                )
            continue
        for key in ("path", "revision", "resolved"):
            if a.get(key) != b.get(key):
                lines.append(f"{name} {key} {show(a.get(key))} -> {show(b.get(key))}")
        fa, fb = a.get("files") or {}, b.get("files") or {}
        for rel in sorted(set(fa) | set(fb)):
            if fa.get(rel) != fb.get(rel):
                lines.append(
                    f"{name} file {rel}: sha256 {show(fa.get(rel), 'absent')} -> "
                    f"{show(fb.get(rel), 'absent')}"
                )
    return lines


def step_changes(ma: dict[str, Any], mb: dict[str, Any]) -> list[str]:
    """Run status, and per step: op, arguments, active adapters, status."""
    lines = [
        f"{k} {show(a)} -> {show(b)}"
        for k in ("status", "error")
        if (a := ma.get(k)) != (b := mb.get(k))
    ]
    sa, sb = ma.get("steps") or [], mb.get("steps") or []
    if len(sa) != len(sb):
        lines.append(f"steps {len(sa)} -> {len(sb)}")
    for a, b in zip(sa, sb, strict=False):
        name = f"step {a.get('index')} {a.get('op')}"
        for key in ("op", "id", "arguments", "active_adapters", "status"):
            for sub, va, vb in changed_leaves(a.get(key), b.get(key)):
                what = " ".join(sub if key == "arguments" and sub else (key, *sub))
                lines.append(f"{name}: {what} {show(va)} -> {show(vb)}")
    return lines


def unique(lines: list[str], seen: set[str]) -> list[str]:
    kept = [line for line in dict.fromkeys(lines) if line not in seen]
    seen.update(kept)
    return kept


def likely_causes(manifest_a: dict[str, Any], manifest_b: dict[str, Any]) -> list[str]:
    """Everything besides the outputs that differs between two runs, phrased for humans."""
    sha_a, sha_b = ((m.get("spec") or {}).get("sha256") for m in (manifest_a, manifest_b))
    lines = [f"spec sha256 {show(sha_a)} -> {show(sha_b)}"] if sha_a != sha_b else []
    for part in (settings_changes, input_changes, environment_changes, step_changes):
        lines += part(manifest_a, manifest_b)
    return unique(lines, set())


@dataclass
class DiffReport:
    """What differs between two runs, section by section."""

    run_a: str
    run_b: str
    spec: list[str]  # unified diff of spec.yaml, empty when the bytes are equal
    environment: list[str]
    settings: list[str]
    inputs: list[str]
    steps: list[str]
    outputs: list[OutputDiff]

    @property
    def outputs_same(self) -> bool:
        return all(d.status == "same" for d in self.outputs)

    @property
    def same(self) -> bool:
        sections = (self.spec, self.environment, self.settings, self.inputs, self.steps)
        return self.outputs_same and not any(sections)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; an infinite PSNR becomes the string "inf"."""
        outputs = [asdict(d) for d in self.outputs]
        for d in outputs:
            if d["psnr"] is not None and math.isinf(d["psnr"]):
                d["psnr"] = "inf"
        return {"same": self.same, **asdict(self), "outputs": outputs}

    def format_text(self) -> str:
        """The report for a terminal."""
        lines = [f"A: {self.run_a}", f"B: {self.run_b}"]
        for name in ("spec", "environment", "settings", "inputs", "steps"):
            body = getattr(self, name)
            lines.append(f"{name}: {'differs' if body else 'same'}")
            lines += [f"  {line}" for line in body]
        lines.append(format_outputs(self.outputs))
        lines.append("runs are the same" if self.same else "runs differ")
        return "\n".join(lines)


def format_outputs(diffs: list[OutputDiff]) -> str:
    """A line per differing output, then a count of identical ones."""
    differing = [d for d in diffs if d.status != "same"]
    head = f"outputs: {len(diffs) - len(differing)} of {len(diffs)} identical"
    return "\n".join([head] + [f"  {d.path}: {d.detail}" for d in differing])


def spec_diff(run_a: Path, run_b: Path) -> list[str]:
    """Unified diff of the two runs' spec.yaml, labelled a/spec.yaml and b/spec.yaml."""
    try:
        a, b = ((r / "spec.yaml").read_bytes() for r in (run_a, run_b))
    except OSError as e:
        raise RunDirError(f"no readable spec.yaml: {e}") from e
    if a == b:
        return []
    la, lb = (x.decode("utf-8", "replace").splitlines() for x in (a, b))
    lines = list(difflib.unified_diff(la, lb, "a/spec.yaml", "b/spec.yaml", lineterm=""))
    return lines or ["(the files differ only in line endings or a final newline)"]


def diff(run_a: Path, run_b: Path) -> DiffReport:
    """Compare two runs: spec, environment, settings, inputs, steps and outputs."""
    ma, mb = load_manifest(run_a), load_manifest(run_b)
    seen: set[str] = set()  # a thread count recorded twice is reported once, in settings
    return DiffReport(
        run_a=str(run_a),
        run_b=str(run_b),
        spec=spec_diff(run_a, run_b),
        settings=unique(settings_changes(ma, mb), seen),
        environment=unique(environment_changes(ma, mb), seen),
        inputs=unique(input_changes(ma, mb), seen),
        steps=unique(step_changes(ma, mb), seen),
        outputs=compare_outputs(run_a, run_b),
    )
