"""What differs between two runs, and what may explain a different output.

Pure Python; no deep-learning library is imported.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from runner.audit.outputs import OutputDiff, compare_outputs
from runner.errors import printable
from runner.record import layout
from runner.record import manifest as m
from runner.record.trust import SPEC_LIMIT, read_run_file


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


# What the record keeps that cannot change an output: where files may come from (the
# inputs' sha256s say what they were), which GPU index or allocator settings were used (the
# GPU's name is recorded apart), the core count (threads are a setting), the runner's git
# commit (its version is compared; the outputs themselves are compared directly). Reported,
# but a difference here alone does not make two runs differ.
NOISE: frozenset[tuple[str, ...]] = frozenset(
    {
        ("env", "HF_HUB_OFFLINE"),
        ("env", "CUDA_VISIBLE_DEVICES"),
        ("env", "PYTORCH_CUDA_ALLOC_CONF"),
        ("cpu_count",),
        ("runner", "git_commit"),
    }
)


def noise_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """The environment's differences that cannot change outputs (NOISE)."""
    return [line for key, line in _environment(ma, mb) if key in NOISE]


def environment_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """Library versions, python, platform, CPU, GPU, env vars and runner version: those
    that can change outputs (see NOISE for the others)."""
    return [line for key, line in _environment(ma, mb) if key not in NOISE]


def _environment(ma: m.Manifest, mb: m.Manifest) -> list[tuple[tuple[str, ...], str]]:
    lines: list[tuple[tuple[str, ...], str]] = []
    for key, a, b in changed_leaves(ma.environment, mb.environment):
        if key[:1] == ("libraries",) and len(key) == 2:
            lines.append((key, f"{key[1]} {show(a, 'absent')} -> {show(b, 'absent')}"))
        elif key[:1] == ("env",) and len(key) == 2:
            lines.append((key, f"{key[1]} {show(a, 'unset')} -> {show(b, 'unset')}"))
        else:
            lines.append((key, f"{label(key)} {show(a)} -> {show(b)}"))
    for key, a, b in changed_leaves(ma.runner, mb.runner):
        lines.append((("runner", *key), f"runner {label(key)} {show(a)} -> {show(b)}"))
    return lines


def settings_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """Device, device name, dtype, seed, threads and deterministic flags."""
    changes = changed_leaves(_plain(ma.settings), _plain(mb.settings))
    return [f"{label(key)} {show(a)} -> {show(b)}" for key, a, b in changes]


def scheduler_changes(a: m.SchedulerRecord | None, b: m.SchedulerRecord | None) -> list[str]:
    """Another scheduler in one line; the same class, each config key that differs."""

    def named(s: m.SchedulerRecord | None) -> str:
        return "none" if s is None else s.type + (f" ({s.sampler})" if s.sampler else "")

    if a is None or b is None or a.type != b.type:
        return [] if a == b else [f"scheduler {named(a)} -> {named(b)}"]
    changes = changed_leaves(a.config, b.config)
    return [f"scheduler config {' '.join(k)} {show(va)} -> {show(vb)}" for k, va, vb in changes]


def setup_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """How the model was loaded: scheduler class and config, components left out, attention."""
    a, b = ma.model_setup or m.ModelSetupRecord(), mb.model_setup or m.ModelSetupRecord()
    lines = [f"model {line}" for line in scheduler_changes(a.scheduler, b.scheduler)]
    for key in ("components_left_out", "attn_implementation", "quantization"):
        if getattr(a, key) != getattr(b, key):
            lines.append(f"model {key} {show(getattr(a, key))} -> {show(getattr(b, key))}")
    return lines


def input_changes(ma: m.Manifest, mb: m.Manifest, *, where: bool = True) -> list[str]:
    """Model and adapter identities: path, revision, and each file's sha256; with
    where=False, not the folder each was found in (another machine keeps its cache
    elsewhere): only what makes them other inputs."""
    pairs = [("model", ma.inputs.model, mb.inputs.model)]
    for kind, a_named, b_named in (
        ("adapter", ma.inputs.adapters, mb.inputs.adapters),
        ("clip model", ma.inputs.clip, mb.inputs.clip),
    ):
        names = list(a_named) + [n for n in b_named if n not in a_named]
        pairs += [(f"{kind} '{n}'", a_named.get(n), b_named.get(n)) for n in names]
    lines = []
    for name, a, b in pairs:
        if a is None or b is None:
            if a != b:
                lines.append(
                    f"{name} {'absent' if a is None else 'declared'} -> "
                    f"{'absent' if b is None else 'declared'}"
                )
            continue
        for field_name in ("path", "subfolder", "revision", "resolved")[: None if where else 3]:
            va, vb = getattr(a, field_name), getattr(b, field_name)
            if va != vb:
                lines.append(f"{name} {field_name} {show(va)} -> {show(vb)}")
        for sub, va, vb in changed_leaves(a.config, b.config):
            lines.append(f"{name} config {' '.join(sub)} {show(va)} -> {show(vb)}")
        for rel in sorted(set(a.files) | set(b.files)):
            if a.files.get(rel) != b.files.get(rel):
                lines.append(
                    f"{name} file {rel}: sha256 {show(a.files.get(rel), 'absent')} -> "
                    f"{show(b.files.get(rel), 'absent')}"
                )
    return lines + _data_changes(ma.inputs.data, mb.inputs.data)


def _data_changes(da: dict[str, m.DataInput], db: dict[str, m.DataInput]) -> list[str]:
    """Data files whose sha256 differs, or that one run has and the other has not."""
    lines = []
    for name in list(da) + [n for n in db if n not in da]:
        sa, sb = (x.sha256[:12] if x else "absent" for x in (da.get(name), db.get(name)))
        if sa != sb:
            lines.append(f"data '{name}' sha256 {sa} -> {sb}")
    return lines


def step_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """Run status, and per step: op, arguments, active adapters, status."""
    lines = [
        f"{k} {show(a)} -> {show(b)}"
        for k in ("status", "error")
        if (a := _plain(getattr(ma, k))) != (b := _plain(getattr(mb, k)))
    ]
    if len(ma.steps) != len(mb.steps):
        lines.append(f"steps {len(ma.steps)} -> {len(mb.steps)}")
    for a, b in zip(ma.steps, mb.steps, strict=False):
        name = f"step {a.index} {a.op}"
        for key in ("op", "id", "arguments", "active_adapters", "status"):
            for sub, va, vb in changed_leaves(getattr(a, key), getattr(b, key)):
                what = " ".join(sub if key == "arguments" and sub else (key, *sub))
                lines.append(f"{name}: {what} {show(va)} -> {show(vb)}")
        lines += [f"{name}: {line}" for line in scheduler_changes(a.scheduler, b.scheduler)]
    return lines


# The ops that write an adapter, and the argument that names it.
ADAPTER_MAKERS = {"merge": "name", "train": "adapter", "save": "adapter"}


def adapters_written(manifest: m.Manifest) -> dict[str, list[tuple[str, str]]]:
    """Adapter name -> (step, sha256 of its weight file) for each step that wrote it."""
    written: dict[str, list[tuple[str, str]]] = {}
    for step in manifest.steps:
        key = ADAPTER_MAKERS.get(step.op)
        name = step.arguments.get(key) if key else None
        weights = [o.sha256 for o in step.outputs if o.path.endswith(".safetensors")]
        if isinstance(name, str) and len(weights) == 1:
            written.setdefault(name, []).append((f"{step.index} {step.op}", weights[0]))
    return written


def adapter_changes(ma: m.Manifest, mb: m.Manifest) -> list[str]:
    """One line per merged, trained or saved adapter whose weights differ: the first step
    where they do, with both short hashes."""
    a, b = adapters_written(ma), adapters_written(mb)
    lines = []
    for name in list(a) + [n for n in b if n not in a]:
        pairs = zip(a.get(name, []), b.get(name, []), strict=False)
        differ = [(step, wa, wb) for (step, wa), (_, wb) in pairs if wa != wb]
        if differ:
            step, wa, wb = differ[0]
            lines.append(f"adapter '{name}' changed (step {step}): sha256 {show(wa)} -> {show(wb)}")
    return lines


def _plain(value: Any) -> Any:
    """A record as plain data, for leaf-by-leaf comparison."""
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def unique(lines: list[str], seen: set[str]) -> list[str]:
    kept = [line for line in dict.fromkeys(lines) if line not in seen]
    seen.update(kept)
    return kept


def likely_causes(manifest_a: m.Manifest, manifest_b: m.Manifest) -> list[str]:
    """Everything besides the outputs that differs between two runs, phrased for humans."""
    sha_a, sha_b = manifest_a.spec.sha256, manifest_b.spec.sha256
    lines = [f"spec sha256 {show(sha_a)} -> {show(sha_b)}"] if sha_a != sha_b else []
    for part in (settings_changes, setup_changes, input_changes, environment_changes, step_changes):
        lines += part(manifest_a, manifest_b)
    lines += noise_changes(manifest_a, manifest_b)
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
    # Each merged, trained or saved adapter whose weights differ, with both short hashes.
    adapters: list[str] = field(default_factory=list)
    # What makes the inputs other inputs (a file's sha256, a revision), wherever they lie.
    other_inputs: list[str] = field(default_factory=list)
    # Environment differences that cannot change outputs (NOISE): shown, never counted.
    noise: list[str] = field(default_factory=list)

    @property
    def outputs_same(self) -> bool:
        return all(d.status == "same" for d in self.outputs)

    @property
    def reproduced(self) -> bool:
        """Run B reproduces run A: the same outputs from the same inputs. The same outputs
        from other inputs are no reproduction."""
        return self.outputs_same and not self.other_inputs

    @property
    def same(self) -> bool:
        sections = (self.spec, self.environment, self.settings, self.inputs, self.steps)
        return self.outputs_same and not any(sections) and not self.adapters

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
            if name == "environment" and self.noise:
                lines.append("  not counted (cannot change outputs):")
                lines += [f"    {line}" for line in self.noise]
        if self.adapters:  # runs that make no adapter say nothing of them
            lines.append("adapters: differ")
            lines += [f"  {line}" for line in self.adapters]
        lines.append(format_outputs(self.outputs))
        lines.append("runs are the same" if self.same else "runs differ")
        return "\n".join(printable(line) for line in "\n".join(lines).split("\n"))


def format_outputs(diffs: list[OutputDiff]) -> str:
    """A line per differing output (and per differing cell of a compare, the first ones
    named and the rest counted), then a count of identical ones."""
    differing = [d for d in diffs if d.status != "same"]
    lines = [f"outputs: {len(diffs) - len(differing)} of {len(diffs)} identical"]
    for d in differing:
        lines.append(printable(f"  {d.path}: {d.detail}"))
        lines += [f"    {cell}" for cell in d.cells]
        if d.cells_differing > len(d.cells):
            lines.append(f"    ... and {d.cells_differing - len(d.cells)} more cells")
    return "\n".join(lines)


def spec_diff(run_a: Path, run_b: Path) -> list[str]:
    """Unified diff of the two runs' spec.yaml, labelled a/spec.yaml and b/spec.yaml."""
    a, b = (read_run_file(r, layout.SPEC, SPEC_LIMIT) for r in (run_a, run_b))
    if a == b:
        return []
    la, lb = (x.decode("utf-8", "replace").splitlines() for x in (a, b))
    lines = list(difflib.unified_diff(la, lb, "a/spec.yaml", "b/spec.yaml", lineterm=""))
    return lines or ["(the files differ only in line endings or a final newline)"]


def diff(run_a: Path, run_b: Path) -> DiffReport:
    """Compare two runs: spec, environment, settings, inputs, steps and outputs."""
    ma, mb = m.read(run_a), m.read(run_b)
    seen: set[str] = set()  # a thread count recorded twice is reported once, in settings
    return DiffReport(
        run_a=str(run_a),
        run_b=str(run_b),
        spec=spec_diff(run_a, run_b),
        settings=unique(settings_changes(ma, mb) + setup_changes(ma, mb), seen),
        environment=unique(environment_changes(ma, mb), seen),
        noise=unique(noise_changes(ma, mb), seen),
        inputs=unique(input_changes(ma, mb), seen),
        steps=unique(step_changes(ma, mb), seen),
        outputs=compare_outputs(run_a, run_b, ma, mb),
        adapters=adapter_changes(ma, mb),
        other_inputs=input_changes(ma, mb, where=False),
    )
