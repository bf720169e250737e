"""Typed spec: frozen dataclasses built from a validated document. No raw dicts past here."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.spec import arguments, expect
from runner.spec import data as data_files
from runner.spec import rows as row_forms
from runner.spec import weights as weight_forms
from runner.spec.arguments import Arguments
from runner.spec.defaults import generate_defaults, with_defaults
from runner.spec.expect import Expect
from runner.spec.vocabulary import CHECKPOINT_EVERY, NAME_MAX


@dataclass(frozen=True)
class Scheduler:
    """A diffusers scheduler class by name; `options` override the pipeline's own config."""

    type: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_written(cls, written: Mapping[str, Any]) -> Scheduler:
        """From the mapping a spec writes: `type`, and the config keys that override."""
        options = dict(written)
        return cls(str(options.pop("type")), options)

    def written(self) -> dict[str, Any]:
        """The mapping as a spec writes it."""
        return {"type": self.type, **self.options}


@dataclass(frozen=True)
class Quantization:
    """A quantized base: bitsandbytes at BITS; 4-bit options; diffusers' components."""

    backend: str
    bits: int
    quant_type: str | None = None
    compute_dtype: str | None = None
    components: tuple[str, ...] = ()

    def written(self) -> dict[str, Any]:
        """The mapping as a spec writes it, keys left out omitted."""
        out: dict[str, Any] = {"backend": self.backend, "bits": self.bits}
        out.update(
            {
                k: v
                for k, v in (("quant_type", self.quant_type), ("compute_dtype", self.compute_dtype))
                if v is not None
            }
        )
        if self.components:
            out["components"] = list(self.components)
        return out


@dataclass(frozen=True)
class Model:
    family: str  # "transformers" | "diffusers"
    path: str  # as written in the spec
    revision: str | None = None
    variant: str | None = None
    trust_remote_code: bool = False
    line: int = 0
    scheduler: Scheduler | None = None  # diffusers: the model's scheduler, when not its own
    components: tuple[str, ...] = ()  # diffusers: components left out, as from_pretrained(x=None)
    attn_implementation: str | None = None  # transformers: eager | sdpa | flash_attention_2
    quantization: Quantization | None = None  # a quantized base (CONTRACT section 13)


@dataclass(frozen=True)
class LoraConfig:
    """A new adapter from a PEFT config; `options` are the LoraConfig keyword arguments."""

    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Adapter:
    name: str
    path: str | None = None  # hub id, local dir or file, or builtin:NAME
    weight_name: str | None = None
    revision: str | None = None
    allow_pickle: bool = False
    config: LoraConfig | None = None
    subfolder: str | None = None  # a folder inside path (a hub repo or a local folder)
    line: int = 0


@dataclass(frozen=True)
class Load:
    adapters: tuple[str, ...]
    line: int = 0
    id: str | None = None
    op: str = "load"
    strict: bool = False  # keys that match no module fail the load, not just warn


@dataclass(frozen=True)
class SetAdapters:
    # (name, weight) in the order written; a weight per component is a mapping (weights.py)
    weights: tuple[tuple[str, weight_forms.Weight], ...]
    line: int = 0
    id: str | None = None
    op: str = "set_adapters"


@dataclass(frozen=True)
class Generate:
    prompts: tuple[str, ...]
    batch: bool  # the prompt was written as a list
    seed: int
    args: Arguments  # the family's arguments, defaults merged (runner.spec.arguments)
    line: int = 0
    id: str | None = None
    op: str = "generate"
    expect: Expect | None = None  # checked after the step (runner.running.expectations)
    seed_from: str = "spec"  # where `seed` came from: see `seed_from`


@dataclass(frozen=True)
class Row:
    """One adapter setting of a compare step; `weights` None is the base model."""

    label: str  # `base`, `3d, cereal` or `3d=0.7, cereal=0.5`
    weights: tuple[tuple[str, weight_forms.Weight], ...] | None
    line: int = 0


@dataclass(frozen=True)
class Compare:
    """Rows x prompts x seeds, each cell as `set_adapters: ROW` + `generate` would make it."""

    rows: tuple[Row, ...]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    args: Arguments  # the family's arguments, defaults merged (runner.spec.arguments)
    line: int = 0
    id: str | None = None
    op: str = "compare"
    expect: Expect | None = None  # checked after the step (runner.running.expectations)
    seed_from: str = "spec"  # where `seeds` came from: see `seed_from`
    metrics: tuple[str, ...] = ()  # clip_score (runner.running.clip)
    clip: str | None = None  # the CLIP model's path as written: hub id, folder, builtin:NAME


@dataclass(frozen=True)
class Disable:
    line: int = 0
    id: str | None = None
    op: str = "disable"


@dataclass(frozen=True)
class Enable:
    line: int = 0
    id: str | None = None
    op: str = "enable"


@dataclass(frozen=True)
class Merge:
    """A new adapter NAME from loaded ones, as peft's add_weighted_adapter makes it."""

    name: str
    method: str
    weights: tuple[tuple[str, float], ...]  # (adapter, weight) in the order written
    density: float | None = None
    majority_sign_method: str = "total"
    svd_rank: int | None = None
    line: int = 0
    id: str | None = None
    op: str = "merge"

    def arguments(self) -> dict[str, Any]:
        """The step as JSON data, every default filled in."""
        return {
            "name": self.name,
            "method": self.method,
            "adapters": dict(self.weights),
            "density": self.density,
            "majority_sign_method": self.majority_sign_method,
            "svd_rank": self.svd_rank,
        }


@dataclass(frozen=True)
class Save:
    """Write adapter ADAPTER in FORMAT (None: the family's own) into the step's folder."""

    adapter: str
    format: str | None = None
    line: int = 0
    id: str | None = None
    op: str = "save"

    def arguments(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "format": self.format}


@dataclass(frozen=True)
class Score:
    """Rows x records: the log-likelihood of each record's continuation (or of each of its
    choices) given its context, under each row's adapter setting."""

    rows: tuple[Row, ...]
    contexts: tuple[str, ...]  # one per record
    continuations: tuple[str, ...] | None = None  # one per record, or None: choices
    choices: tuple[tuple[str, ...], ...] | None = None  # one tuple per record
    labels: tuple[int, ...] | None = None  # the right choice of each record
    line: int = 0
    id: str | None = None
    op: str = "score"


@dataclass(frozen=True)
class Train:
    """Fine-tune ADAPTER on TEXTS, or on PROMPTS + COMPLETIONS (the loss on the completion)."""

    adapter: str
    steps: int
    texts: tuple[str, ...] = ()  # the whole text is the target
    prompts: tuple[str, ...] = ()  # with completions: one per prompt
    completions: tuple[str, ...] = ()
    learning_rate: float = 1e-4
    batch_size: int = 4
    max_length: int = 128
    seed: int = 0
    checkpoint_every: int = CHECKPOINT_EVERY  # steps between two checkpoints
    line: int = 0
    id: str | None = None
    op: str = "train"

    def arguments(self) -> dict[str, Any]:
        out: dict[str, Any] = {"adapter": self.adapter, "steps": self.steps}
        if self.texts:
            out["text"] = list(self.texts)
        else:
            out.update(prompt=list(self.prompts), completion=list(self.completions))
        out.update(
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            max_length=self.max_length,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )
        return out


@dataclass(frozen=True)
class Fuse:
    """Fold the active adapters into the base weights at LORA_SCALE."""

    lora_scale: float = 1.0
    line: int = 0
    id: str | None = None
    op: str = "fuse"

    def arguments(self) -> dict[str, Any]:
        return {"lora_scale": self.lora_scale}


@dataclass(frozen=True)
class Unfuse:
    line: int = 0
    id: str | None = None
    op: str = "unfuse"

    def arguments(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Delete:
    """Remove ADAPTERS from the model and from the interpreter's books."""

    adapters: tuple[str, ...]
    line: int = 0
    id: str | None = None
    op: str = "delete"

    def arguments(self) -> dict[str, Any]:
        return {"adapters": list(self.adapters)}


Step = (
    Load
    | SetAdapters
    | Generate
    | Compare
    | Disable
    | Enable
    | Score
    | Merge
    | Save
    | Train
    | Fuse
    | Unfuse
    | Delete
)


@dataclass(frozen=True)
class Spec:
    file: Path  # where the spec was read from
    name: str
    version: int
    seed: int
    device: str
    dtype: str
    deterministic: bool
    model: Model
    adapters: dict[str, Adapter]
    steps: tuple[Step, ...]
    base_dir: Path  # relative local paths in the spec resolve against this folder
    description: str = ""
    raw: bytes = b""  # the file's exact bytes
    data: dict[str, data_files.DataSet] = field(default_factory=dict)  # `data:`, read

    def where(self, index: int) -> str:
        """FILE:LINE: step N (op) for the 1-based step INDEX; step 0 is the model. The one
        spelling of where a run stopped, in its error and in its manifest."""
        if index == 0:
            return f"{self.file}:{self.model.line}: model"
        step = self.steps[index - 1]
        return f"{self.file}:{step.line}: step {index} ({step.op})"


def from_document(
    data: dict[str, Any],
    lines: dict[tuple[Any, ...], tuple[int, int]],
    file: Path,
    raw: bytes,
    base_dir: Path,
) -> Spec:
    """Build the typed spec from a document that passed every check."""
    seed = data.get("seed", 0)
    model = data["model"]
    defaults = generate_defaults(data)

    def line(*path: Any) -> int:
        return lines.get(tuple(path), (0, 0))[0]

    adapters = {}
    for name, entry in data.get("adapters", {}).items():
        config = entry.get("config")
        adapters[name] = Adapter(
            name=name,
            path=entry.get("path"),
            weight_name=entry.get("weight_name"),
            subfolder=entry.get("subfolder"),
            revision=entry.get("revision"),
            allow_pickle=entry.get("allow_pickle", False),
            config=LoraConfig(config["type"], {k: v for k, v in config.items() if k != "type"})
            if config
            else None,
            line=line("adapters", name),
        )
    sets = {
        name: data_files.read(name, entry["path"], base_dir)
        for name, entry in data.get("data", {}).items()
    }
    defaults = _from_data(defaults, sets)
    steps: list[Step] = []
    for i, raw_step in enumerate(data["steps"]):
        here = _Here(
            line("steps", i),
            raw_step.get("id"),
            model["family"],
            defaults,
            seed,
            functools.partial(line, "steps", i),
        )
        raw_step = _from_data(raw_step, sets)
        steps.append(BUILDERS[raw_step["op"]](raw_step, here))
    return Spec(
        file=file,
        name=data.get("name") or _default_name(file),
        version=data["version"],
        seed=seed,
        device=data.get("device", "auto"),
        dtype=data.get("dtype", "auto"),
        deterministic=data.get("deterministic", True),
        model=Model(
            family=model["family"],
            path=model["path"],
            revision=model.get("revision"),
            variant=model.get("variant"),
            trust_remote_code=model.get("trust_remote_code", False),
            line=line("model"),
            scheduler=Scheduler.from_written(model["scheduler"]) if "scheduler" in model else None,
            components=tuple(model.get("components", {})),
            attn_implementation=model.get("attn_implementation"),
            quantization=_quantization(model.get("quantization")),
        ),
        adapters=adapters,
        steps=tuple(steps),
        base_dir=base_dir,
        description=data.get("description", ""),
        raw=raw,
        data=sets,
    )


def _from_data(mapping: dict[str, Any], sets: dict[str, data_files.DataSet]) -> dict[str, Any]:
    """MAPPING with each `{data, field}` reference replaced by the field's values, a list
    with one per record (checked to hold them when the spec was validated)."""
    from runner.spec.datachecks import USES

    out = dict(mapping)
    for key, kind in USES.items():
        value = out.get(key)
        if isinstance(value, dict) and data_files.is_ref(value):
            ref = data_files.ref(value)
            found = sets[ref.data].values(ref.field, kind)
            out[key] = [list(v) if isinstance(v, tuple) else v for v in found]
    written = out.get("expect")
    if isinstance(written, dict):
        out["expect"] = {k: _expected(v, sets) for k, v in written.items()}
    return out


def _expected(value: Any, sets: dict[str, data_files.DataSet]) -> Any:
    """A text expectation taken from a data field: its values, and where they came from."""
    if not data_files.is_ref(value):
        return value
    ref = data_files.ref(value)
    return expect.PerPrompt(sets[ref.data].values(ref.field), True, (ref.data, ref.field))


@dataclass(frozen=True)
class _Here:
    """What building one step needs besides the step: its line and id, the spec's generate
    defaults and seed, and the line of a path inside the step."""

    at: int
    id: str | None
    family: str
    defaults: dict[str, Any]
    seed: int
    line: Callable[..., int]


def _load(raw_step: dict[str, Any], here: _Here) -> Load:
    names = raw_step["adapters"]
    loads = tuple([names] if isinstance(names, str) else names)
    return Load(loads, here.at, here.id, strict=bool(raw_step.get("strict", False)))


def _set_adapters(raw_step: dict[str, Any], here: _Here) -> SetAdapters:
    chosen = raw_step["adapters"]
    if isinstance(chosen, str):
        chosen = [chosen]
    pairs = chosen.items() if isinstance(chosen, dict) else ((n, 1.0) for n in chosen)
    return SetAdapters(tuple((n, weight_forms.typed(w)) for n, w in pairs), here.at, here.id)


def _generate(raw_step: dict[str, Any], here: _Here) -> Generate:
    args = with_defaults(here.defaults, raw_step)
    prompt = args.pop("prompt")
    step_seed = args.pop("seed", here.seed)
    for key in ("op", "id"):
        args.pop(key, None)
    expected = args.pop("expect", None)
    return Generate(
        prompts=tuple([prompt] if isinstance(prompt, str) else prompt),
        batch=not isinstance(prompt, str),
        seed=step_seed,
        args=arguments.of(here.family, args),
        line=here.at,
        id=here.id,
        expect=expect.build(expected, here.at),
        seed_from=seed_from(raw_step, here.defaults),
    )


def _compare_step(raw_step: dict[str, Any], here: _Here) -> Compare:
    row_lines = [here.line("adapters", j) for j in range(len(raw_step["adapters"]))]
    return _compare(raw_step, here.family, here.defaults, here.seed, here.at, row_lines)


# op -> how its typed step is built: the one dispatch over ops of the typed spec.
BUILDERS: dict[str, Callable[[dict[str, Any], _Here], Step]] = {
    "load": _load,
    "set_adapters": _set_adapters,
    "generate": _generate,
    "compare": _compare_step,
    "disable": lambda raw_step, here: Disable(here.at, here.id),
    "enable": lambda raw_step, here: Enable(here.at, here.id),
    "score": lambda raw_step, here: _score(raw_step, here),
    "merge": lambda raw_step, here: _merge(raw_step, here),
    "save": lambda raw_step, here: Save(
        raw_step["adapter"], raw_step.get("format"), here.at, here.id
    ),
    "train": lambda raw_step, here: _train(raw_step, here),
    "fuse": lambda raw_step, here: Fuse(float(raw_step.get("lora_scale", 1.0)), here.at, here.id),
    "unfuse": lambda raw_step, here: Unfuse(here.at, here.id),
    "delete": lambda raw_step, here: Delete(_load(raw_step, here).adapters, here.at, here.id),
}


def _train(raw_step: dict[str, Any], here: _Here) -> Train:
    def texts(key: str) -> tuple[str, ...]:
        value = raw_step.get(key)
        return tuple([value] if isinstance(value, str) else value or ())

    return Train(
        adapter=raw_step["adapter"],
        steps=int(raw_step["steps"]),
        texts=texts("text"),
        prompts=texts("prompt"),
        completions=texts("completion"),
        learning_rate=float(raw_step.get("learning_rate", 1e-4)),
        batch_size=int(raw_step.get("batch_size", 4)),
        max_length=int(raw_step.get("max_length", 128)),
        seed=int(raw_step.get("seed", here.seed)),
        checkpoint_every=int(raw_step.get("checkpoint_every", CHECKPOINT_EVERY)),
        line=here.at,
        id=here.id,
    )


def _score(raw_step: dict[str, Any], here: _Here) -> Score:
    """A score step, each of its values one per record (one written for all: repeated)."""
    written = raw_step["adapters"]
    rows = tuple(
        Row(
            row_forms.label(weights, mapping=isinstance(row, dict)),
            weights,
            here.line("adapters", j),
        )
        for j, row in enumerate(written)
        for weights in row_forms.expand(row)
    )
    choices = raw_step.get("choices")
    if isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices):
        choices = [choices]  # one list of choices for every record
    labels = raw_step.get("label")
    values = {
        "context": raw_step["context"],
        "continuation": raw_step.get("continuation"),
        "choices": choices,
        "label": labels,
    }
    count = max(len(v) if isinstance(v, list) else 1 for v in values.values() if v is not None)

    def each(value: Any) -> tuple[Any, ...] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        return tuple(items * count if len(items) == 1 else items)

    picked = each(values["choices"])
    return Score(
        rows=rows,
        contexts=each(values["context"]) or (),
        continuations=each(values["continuation"]),
        choices=None if picked is None else tuple(tuple(c) for c in picked),
        labels=each(values["label"]),
        line=here.at,
        id=here.id,
    )


def _merge(raw_step: dict[str, Any], here: _Here) -> Merge:
    chosen = raw_step["adapters"]
    pairs = chosen.items() if isinstance(chosen, dict) else ((n, 1.0) for n in chosen)
    density = raw_step.get("density")
    return Merge(
        name=raw_step["name"],
        method=raw_step.get("method", "linear"),
        weights=tuple((n, float(w)) for n, w in pairs),
        density=None if density is None else float(density),
        majority_sign_method=raw_step.get("majority_sign_method", "total"),
        svd_rank=raw_step.get("svd_rank"),
        line=here.at,
        id=here.id,
    )


def _compare(
    raw_step: dict[str, Any],
    family: str,
    defaults: dict[str, Any],
    seed: int,
    at: int,
    row_lines: list[int],
) -> Compare:
    args = with_defaults(defaults, raw_step)
    prompt, seeds = args.pop("prompt"), args.pop("seed", seed)
    written = args.pop("adapters")
    for key in ("op", "id", "max_cells"):
        args.pop(key, None)
    expected = args.pop("expect", None)
    metrics, clip = tuple(args.pop("metrics", ())), args.pop("clip", None)
    rows = tuple(
        Row(row_forms.label(weights, mapping=isinstance(row, dict)), weights, row_line)
        for row, row_line in zip(written, row_lines, strict=True)
        for weights in row_forms.expand(row)
    )
    return Compare(
        rows=rows,
        prompts=tuple([prompt] if isinstance(prompt, str) else prompt),
        seeds=tuple([seeds] if isinstance(seeds, int) else seeds),
        args=arguments.of(family, args),
        line=at,
        id=raw_step.get("id"),
        expect=expect.build(expected, at),
        seed_from=seed_from(raw_step, defaults),
        metrics=metrics,
        clip=None if clip is None else clip["path"],
    )


def compare_metrics(step: Compare) -> dict[str, Any]:
    """A compare's metrics and CLIP model as JSON data (resolved.json, the step's record)."""
    return {"metrics": list(step.metrics), "clip": {"path": step.clip}} if step.metrics else {}


def score_arguments(step: Score) -> dict[str, Any]:
    """A score step's rows and values as JSON data (resolved.json, the step's record)."""
    out: dict[str, Any] = {
        "rows": [r.label for r in step.rows],
        "adapters": [None if r.weights is None else dict(r.weights) for r in step.rows],
        "context": list(step.contexts),
    }
    if step.continuations is not None:
        out["continuation"] = list(step.continuations)
    if step.choices is not None:
        out["choices"] = [list(c) for c in step.choices]
        out["label"] = list(step.labels or ())
    return out


def seed_from(raw_step: dict[str, Any], defaults: dict[str, Any]) -> str:
    """Where a generating step's seed comes from: `step` (its own `seed:`), `defaults`
    (`defaults.generate.seed`) or `spec` (the spec's top-level `seed`)."""
    if "seed" in raw_step:
        return "step"
    return "defaults" if "seed" in defaults else "spec"


def _quantization(written: dict[str, Any] | None) -> Quantization | None:
    if written is None:
        return None
    return Quantization(
        backend=written["backend"],
        bits=int(written["bits"]),
        quant_type=written.get("quant_type"),
        compute_dtype=written.get("compute_dtype"),
        components=tuple(written.get("components", ())),
    )


def _default_name(file: Path) -> str:
    """The file's stem, made fit for a folder name (as long as a written name may be)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", file.stem.lower())[:NAME_MAX].strip("-._")
    return name or "spec"


def _model_dict(model: Model) -> dict[str, Any]:
    """The model as JSON data, its scheduler and components in the shape a spec writes."""
    out = asdict(model)
    out["scheduler"] = model.scheduler.written() if model.scheduler else None
    out["components"] = dict.fromkeys(model.components)
    out["quantization"] = model.quantization.written() if model.quantization else None
    return out


def resolved(spec: Spec) -> dict[str, Any]:
    """The spec with every default filled in, as JSON-ready data."""

    def step_dict(step: Step) -> dict[str, Any]:
        out: dict[str, Any] = {"op": step.op, "id": step.id, "line": step.line}
        if isinstance(step, Load):
            out["adapters"] = list(step.adapters)
        elif isinstance(step, SetAdapters):
            out["adapters"] = dict(step.weights)
        elif isinstance(step, Generate):
            out.update(prompt=list(step.prompts) if step.batch else step.prompts[0], seed=step.seed)
            out.update(step.args.written())
        elif isinstance(step, Compare):
            out["adapters"] = [
                row_forms.BASE if r.weights is None else dict(r.weights) for r in step.rows
            ]
            out.update(prompt=list(step.prompts), seed=list(step.seeds))
            out.update(step.args.written())
            out.update(compare_metrics(step))
        elif isinstance(step, (Merge, Save, Train, Fuse, Unfuse, Delete)):
            out.update(step.arguments())
        elif isinstance(step, Score):
            out.update(score_arguments(step))
        return out

    return {
        "version": spec.version,
        "name": spec.name,
        "description": spec.description,
        "seed": spec.seed,
        "device": spec.device,
        "dtype": spec.dtype,
        "deterministic": spec.deterministic,
        "model": _model_dict(spec.model),
        "adapters": {
            name: {
                **asdict(a),
                "config": None if a.config is None else {"type": a.config.type, **a.config.options},
            }
            for name, a in spec.adapters.items()
        },
        "steps": [step_dict(s) for s in spec.steps],
    }
