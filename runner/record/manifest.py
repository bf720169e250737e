"""The run record as types: what `manifest.json` and the step journal hold, written and read.

A run writes `manifest.json` whole when it starts, once its model is loaded and when it
ends; in between, each finished step is one fsynced line of `journal.jsonl`, so the cost of
recording grows with the number of steps, not with its square. A run that was killed
(`status: running` after its process died) is read back with the steps of its journal.

`read(run_dir)` is the one validating reader: a malformed or foreign manifest is one
RunDirError line, "not a runner manifest: ...", never an AttributeError later.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunDirError, printable
from runner.record.layout import JOURNAL, MANIFEST
from runner.record.trust import JOURNAL_LIMIT, MANIFEST_LIMIT, UnsafePath, read_run_file
from runner.spec.values import is_int
from runner.spec.weights import Weight

SCHEMA_VERSION = 1
FINISHED = ("succeeded", "failed", "interrupted")


@dataclass
class Output:
    """One file a step wrote, relative to the run directory."""

    path: str
    sha256: str


@dataclass
class SchedulerRecord:
    """A diffusers scheduler as it ran: class, full config after overrides, sampler name."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)  # non-finite numbers as "inf", "nan"
    sampler: str | None = None  # the usual (AUTOMATIC1111) name where one matches


@dataclass
class ModelSetupRecord:
    """How the base model was loaded besides its files."""

    scheduler: SchedulerRecord | None = None  # diffusers: the model's scheduler
    components_left_out: list[str] = field(default_factory=list)  # diffusers
    attn_implementation: str | None = None  # transformers: the attention the model runs
    quantization: dict[str, Any] | None = None  # a quantized base, as the spec wrote it


@dataclass
class Span:
    """A value that differs across an adapter's layers: its smallest and largest."""

    min: float
    max: float


@dataclass
class RowSummary:
    """One row of a compare with a `base` row: how far it is from base, and whether it is
    a no-op (every cell equal to its base cell)."""

    row: str
    noop: bool
    mean_distance: float | None = None  # images: mean of mean_abs; text: mean of kl


@dataclass
class ScoreRow:
    """One row of a scoring step, over its records. A score step: mean loglik, perplexity
    (exp of minus the summed loglik over the summed tokens), and with choices the mean acc
    and acc_norm. A compare: `accuracy` (the fraction of the row's cells that pass every
    text expectation taken from data) and the mean `clip_score`; `records` counts its cells."""

    row: str
    adapters: dict[str, Weight] | None  # None: base
    records: int
    loglik: float | None = None
    tokens: int | None = None
    perplexity: float | None = None  # None where it overflows a float
    acc: float | None = None
    acc_norm: float | None = None
    accuracy: float | None = None
    clip_score: float | None = None


@dataclass
class FailedCell:
    """One cell (or row) where an expectation failed, and how."""

    detail: str  # e.g. "' sat on the mat' does not contain 'dog'"
    row: str | None = None  # compare: the row's label
    prompt: str | None = None
    seed: int | None = None


FAILED_CELLS_KEPT = 20  # an expectation records its first failing cells and their count


@dataclass
class ExpectationResult:
    """One `expect:` entry of a step as checked: passed, or where it failed."""

    name: str  # differs_from_base | min_distance | contains | not_contains | equals | regex
    passed: bool
    expected: Any = None  # the value the spec wrote
    failing: list[FailedCell] = field(default_factory=list)  # the first FAILED_CELLS_KEPT
    failing_count: int = 0


@dataclass
class MemoryUse:
    """Bytes of memory the process holds: its resident set, and on CUDA torch's allocation."""

    rss_bytes: int
    cuda_allocated_bytes: int | None = None  # None: not on CUDA

    def minus(self, other: MemoryUse) -> MemoryUse:
        mine, theirs = self.cuda_allocated_bytes, other.cuda_allocated_bytes
        cuda = None if mine is None or theirs is None else mine - theirs
        return MemoryUse(self.rss_bytes - other.rss_bytes, cuda)

    def shown(self) -> str:
        """`RSS 812.3 MiB, CUDA 40.0 MiB` (CUDA where it was measured)."""
        text = f"RSS {self.rss_bytes / 2**20:.1f} MiB"
        if self.cuda_allocated_bytes is not None:
            text += f", CUDA {self.cuda_allocated_bytes / 2**20:.1f} MiB"
        return text


@dataclass
class StepMemory:
    """A step's memory (runner.backends.memory): its peak, and for delete what the process
    held before and after (each after a garbage collection)."""

    peak: MemoryUse  # RSS high-water mark; CUDA: torch's max_memory_allocated in the step
    peak_rss_since: str = "step"  # step | process (the OS cannot reset the mark: not Linux)
    before: MemoryUse | None = None  # delete
    after: MemoryUse | None = None  # delete


@dataclass
class StepRecord:
    """One step as it ran."""

    index: int  # 1-based
    op: str
    line: int
    status: str  # ok | failed | interrupted
    seconds: float
    id: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    active_adapters: dict[str, Weight] | None = None  # None while disabled
    outputs: list[Output] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)  # how the step was carried out
    scheduler: SchedulerRecord | None = None  # the step's own scheduler, when it set one
    rows: list[RowSummary] | None = None  # a compare with a base row: each other row's distance
    scores: list[ScoreRow] | None = None  # each row's scores: a score step's, a compare's metrics
    expectations: list[ExpectationResult] | None = None  # the step's `expect:`, checked
    memory: StepMemory | None = None  # None in records written before it was kept


@dataclass
class Identity:
    """A model or adapter, byte for byte."""

    path: str | None
    resolved: str | None = None
    revision: str | None = None  # the hub commit it resolved to
    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256
    config: dict[str, Any] | None = None  # an adapter built from a PEFT config
    subfolder: str | None = None  # the folder of `path` that was loaded, as the spec names it


@dataclass
class AdapterHashes:
    """The hashes civitai and AUTOMATIC1111 show for a weight file (runner.record.adapter_file)."""

    sha256: str
    autov2: str  # the first 10 hex of sha256
    autov3: str | None = None  # safetensors: sha256 of the bytes after the header
    sshs_model_hash: str | None = None  # what the file's metadata says its autov3 is
    sshs_model_hash_matches: bool | None = None


@dataclass
class KohyaMetadata:
    """The kohya-ss training metadata of a file, where it has some."""

    ss_base_model_version: str | None = None
    ss_network_dim: str | None = None
    ss_network_alpha: str | None = None
    ss_resolution: str | None = None
    top_tags: list[str] = field(default_factory=list)  # the ten most frequent in ss_tag_frequency


@dataclass
class ComponentLoad:
    """What an adapter changed in one component (unet, text_encoder, ..., model)."""

    modules: int
    module_names: list[str] = field(default_factory=list)
    unmatched_keys: list[str] = field(default_factory=list)  # the first 20
    unmatched_count: int = 0


@dataclass
class LoadReport:
    """What loading an adapter did (CONTRACT section 9): modules, unmatched keys, rank,
    alpha and where it came from, scale, kohya metadata, hashes."""

    modules: int
    components: dict[str, ComponentLoad] = field(default_factory=dict)
    unmatched_keys: list[str] = field(default_factory=list)  # the first 20, of every component
    unmatched_count: int = 0
    rank: int | Span | None = None
    alpha: float | Span | None = None
    alpha_source: str | None = None  # config | file | metadata | default
    scale: float | Span | None = None  # alpha / rank
    kohya: KohyaMetadata | None = None
    hashes: AdapterHashes | None = None
    warnings: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        """The terminal's line: `adapter a: 140 modules (unet 140), 0 keys unmatched, rank 4,
        alpha 8 (file), scale 2.0`."""
        parts = ", ".join(f"{p} {c.modules}" for p, c in self.components.items() if c.modules)
        text = f"adapter {name}: {self.modules} modules" + (f" ({parts})" if parts else "")
        text += f", {self.unmatched_count} keys unmatched"
        if self.rank is not None:
            text += f", rank {_number(self.rank)}"
        if self.alpha is not None:
            text += f", alpha {_number(self.alpha)} ({self.alpha_source})"
        if self.scale is not None:
            text += f", scale {_number(self.scale, point=True)}"
        return text


def _number(value: float | Span, point: bool = False) -> str:
    """4, 8 or 0.5 (2.0 with POINT, as a scale reads); a span as 4-8."""
    if isinstance(value, Span):
        return f"{_number(value.min, point)}-{_number(value.max, point)}"
    return str(float(value)) if point else f"{value:g}"


@dataclass
class AdapterRecord:
    """What the run learnt of one adapter by loading it."""

    load: LoadReport | None = None


@dataclass
class DataInput:
    """A data file a spec reads (`data:`), byte for byte."""

    path: str  # as the spec writes it
    sha256: str
    records: int
    resolved: str | None = None  # where it was read from


@dataclass
class Inputs:
    model: Identity | None = None
    adapters: dict[str, Identity] = field(default_factory=dict)
    data: dict[str, DataInput] = field(default_factory=dict)  # data files, by name
    clip: dict[str, Identity] = field(default_factory=dict)  # clip_score's models, by path


@dataclass
class SpecRecord:
    file: str
    sha256: str
    name: str
    base_dir: str


@dataclass
class Settings:
    device: str
    device_name: str | None
    dtype: str
    seed: int
    threads: int | None
    deterministic: dict[str, Any]


@dataclass
class Failure:
    step: int  # 0: before the first step (the model)
    where: str
    message: str


@dataclass
class Origin:
    """How a run came about besides its spec. None of it changes an output: diff skips it."""

    model_reused_from: str | None = None  # the run whose load of the base model this run reused
    resumed_from: str | None = None  # the stopped run whose finished outputs this run took
    retry_of: str | None = None  # the run a dead worker left, which this run repeats
    worker: str | None = None  # host:pid of the Ray worker that ran it


@dataclass
class Manifest:
    """Everything a run records besides its outputs."""

    status: str  # running | succeeded | failed | interrupted
    started: str
    spec: SpecRecord
    runner: dict[str, Any]
    ended: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    settings: Settings | None = None
    inputs: Inputs = field(default_factory=Inputs)
    model_setup: ModelSetupRecord | None = None  # scheduler, components left out, attention
    adapters: dict[str, AdapterRecord] = field(default_factory=dict)  # load reports, by name
    steps: list[StepRecord] = field(default_factory=list)
    error: Failure | None = None
    origin: Origin = field(default_factory=Origin)
    schema_version: int = SCHEMA_VERSION

    @property
    def finished(self) -> bool:
        """False for a run whose process died before it could record its end."""
        return self.status in FINISHED

    def failed_expectations(self) -> list[str]:
        """`step N: NAME` for each expectation that failed, in step order."""
        return [
            f"step {step.index}: {result.name}"
            for step in self.steps
            for result in step.expectations or []
            if not result.passed
        ]

    def outputs(self) -> dict[str, int]:
        """Output relpath -> step index, in step order."""
        return {out.path: step.index for step in self.steps for out in step.outputs}


def to_json(value: Any) -> bytes:
    """Standard JSON (never NaN or Infinity), indented, UTF-8, with a final newline; records
    (dataclasses) as mappings of their fields."""
    text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False, default=_plain)
    return (text + "\n").encode("utf-8")


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest as written, `schema_version` first."""
    return to_json({"schema_version": manifest.schema_version, **_plain(manifest)})


def journal_line(step: StepRecord) -> bytes:
    text = json.dumps(step, ensure_ascii=False, allow_nan=False, default=_plain)
    return (text + "\n").encode("utf-8")


def _plain(record: Any) -> dict[str, Any]:
    """A record's fields, for json.dumps to go on with (what dataclasses.asdict gives,
    without copying every value first)."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"{type(record).__name__} is not JSON serializable")
    return {name: getattr(record, name) for name in _names(type(record))}


@functools.cache
def _names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


class _Malformed(Exception):
    """What is off (" is 3, expected a mapping") and where, as a path built on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem, self.path = problem, ""

    def under(self, segment: str) -> _Malformed:
        self.path = segment + self.path
        return self

    def message(self, root: str) -> str:
        return f"{root}{self.path}{self.problem}"


def _same(value: Any) -> Any:
    return value


@functools.cache
def _reader(kind: Any) -> Callable[[Any], Any]:
    """A function that checks a JSON value against the type annotation KIND and builds it
    (dataclasses from mappings); made once per type, since a manifest holds thousands of
    records of a few types."""
    if kind is Any:
        return _same
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _union_reader([_reader(a) for a in args if a is not type(None)], type(None) in args)
    if dataclasses.is_dataclass(kind):
        return _record_reader(kind)
    if origin is dict:
        return _dict_reader(_reader(args[1]))
    if origin is list:
        return _list_reader(_reader(args[0]))
    return _scalar_reader(kind)


def _union_reader(options: list[Callable[[Any], Any]], nullable: bool) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if value is None and nullable:
            return None
        for option in options:
            try:
                return option(value)
            except _Malformed:
                continue
        raise _Malformed(f" is {_shown(value)}")

    return read


def _record_reader(kind: Any) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(kind)
    fields = [
        (
            f.name,
            _reader(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(kind)
    ]

    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Malformed(f" is {_shown(value)}, expected a mapping")
        kwargs = {}
        for name, field_reader, required in fields:
            if name in value:
                try:
                    kwargs[name] = field_reader(value[name])
                except _Malformed as error:
                    raise error.under(f".{name}") from None
            elif required:
                raise _Malformed(f" has no {name!r}")
        return kind(**kwargs)

    return read


def _dict_reader(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Malformed(f" is {_shown(value)}, expected a mapping")
        if item is _same:
            return dict(value)
        built = {}
        for key, v in value.items():
            try:
                built[str(key)] = item(v)
            except _Malformed as error:
                raise error.under(f".{key}") from None
        return built

    return read


def _list_reader(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if not isinstance(value, list):
            raise _Malformed(f" is {_shown(value)}, expected a list")
        built = []
        for i, v in enumerate(value):
            try:
                built.append(item(v))
            except _Malformed as error:
                raise error.under(f"[{i}]") from None
        return built

    return read


def _scalar_reader(kind: type) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if kind is float and is_int(value):
            return float(value)
        if is_int(value) if kind is int else isinstance(value, kind):
            return value
        raise _Malformed(f" is {_shown(value)}, expected {kind.__name__}")

    return read


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse(data: Any) -> Manifest:
    """A manifest from its JSON data; raises ValueError naming the first field that is off."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise ValueError(f"schema_version is {_shown(version)}, expected {SCHEMA_VERSION}")
    try:
        return typing.cast(Manifest, _reader(Manifest)(data))
    except _Malformed as exc:
        raise ValueError(exc.message("manifest")) from None


def read(run_dir: Path) -> Manifest:
    """A run's manifest; for a run that never finished, with the steps its journal holds."""
    file = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise RunDirError(printable(f"{run_dir}: not a directory"))
    try:
        data = json.loads(read_run_file(run_dir, MANIFEST, MANIFEST_LIMIT))
    except UnsafePath as exc:
        if exc.missing:
            raise RunDirError(
                printable(f"{run_dir}: not a run directory (no {MANIFEST})")
            ) from None
        raise
    except (ValueError, RecursionError) as exc:
        raise RunDirError(printable(f"{file}: not a runner manifest: {exc}")) from None
    try:
        manifest = parse(data)
    except (ValueError, RecursionError) as exc:
        raise RunDirError(printable(f"{file}: not a runner manifest: {exc}")) from None
    if not manifest.finished:
        manifest.steps = read_journal(run_dir)
    return manifest


def read_journal(run_dir: Path) -> list[StepRecord]:
    """The steps a journal holds; a line cut short by a kill is dropped."""
    try:
        lines = read_run_file(run_dir, JOURNAL, JOURNAL_LIMIT).split(b"\n")
    except UnsafePath as exc:
        if exc.missing:
            return []
        raise
    steps = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            steps.append(_reader(StepRecord)(json.loads(line)))
        except (ValueError, _Malformed):
            if number < len(lines) - 1:  # only the last line can be cut short
                raise RunDirError(
                    printable(f"{run_dir / JOURNAL}:{number}: not a step record")
                ) from None
    return steps
