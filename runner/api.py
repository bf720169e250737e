"""The Python API: what the CLI does, a notebook can do. The CLI is a thin shell over this.

Importing it, or calling validate, load_spec, open_run, verify, write_report or diff, loads no
deep-learning library; `run` loads the model's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import Located, Refused, RunDirError, SpecError
from runner.spec.weights import Weight

if TYPE_CHECKING:
    from PIL.Image import Image

    from runner.audit.checksums import VerifyReport
    from runner.audit.diff import DiffReport
    from runner.backends.base import Ticker
    from runner.record.manifest import Manifest, ScoreRow, StepRecord
    from runner.running.many import Many
    from runner.spec.types import Spec


def validate(spec: str | Path | dict[str, Any]) -> list[Located]:
    """The spec's problems, each located (file, line, column, path, message); [] when valid."""
    try:
        load_spec(spec)
    except SpecError as exc:
        return exc.problems
    return []


def load_spec(spec: str | Path | dict[str, Any], *, base_dir: Path | None = None) -> Spec:
    """The typed spec from a YAML file or a dict; raises SpecError (with .problems).

    A dict is checked exactly as a file holding it would be, once it is JSON-shaped (numpy
    numbers, sets, bytes, non-string keys, cycles, NaN are problems too); its problems are
    located by JSON path, without lines. Relative paths in it resolve against BASE_DIR, by
    default the working directory.
    """
    from runner.spec.load import load, load_data

    if isinstance(spec, dict):
        return load_data(spec, base_dir or Path.cwd())
    return load(Path(spec), base_dir=base_dir)


@dataclass
class Text:
    """One completion of a generate step."""

    prompt: str
    text: str
    token_ids: list[int]
    seed: int
    adapters: dict[str, Weight] | None


@dataclass
class Picture:
    """One image of a generate step, opened lazily from its PNG."""

    file: Path
    prompt: str
    seed: int
    adapters: dict[str, Weight] | None
    info: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> Image:
        from PIL import Image

        with Image.open(self.file) as opened:
            opened.load()
            return opened


@dataclass
class Run:
    """A run directory, read through its typed manifest."""

    dir: Path
    manifest: Manifest

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def outputs(self) -> Outputs:
        """Each step's outputs by step id (or NN-generate, NN-compare when it has none).

        A compare step's are its cells as texts or images; `cells` adds their rows.
        """
        found = Outputs(self.dir)
        for step in self.manifest.steps:
            if not step.outputs:
                continue
            key = step.id or f"{step.index:02d}-{step.op}"
            if step.op == "compare":
                found[key] = _as_outputs(self._cells(step))
            else:
                found[key] = _read_outputs(self.dir, [o.path for o in step.outputs])
        return found

    def cells(self, step: str | int) -> list[Cell]:
        """A compare step's cells in cells.jsonl order: by row, prompt, seed, then image.

        STEP is the step's id, its folder's name (`03-styles`, `03-compare` without an id) or
        its 1-based index.
        """
        for record in self.manifest.steps:
            names = {record.id, f"{record.index:02d}-{record.id or record.op}", record.index}
            if step in names and record.op == "compare":
                return self._cells(record)
        known = [s.id or f"{s.index:02d}-compare" for s in self.manifest.steps if s.op == "compare"]
        raise RunDirError(
            f"no compare step {step!r} in {self.dir} (compare steps: {known or 'none'})"
        )

    def scores(self, step: str | int) -> list[ScoreRow]:
        """A score step's rows as the manifest summarises them (mean loglik, perplexity,
        acc, acc_norm), or a compare's metrics (accuracy, clip_score; none: []): the
        numbers `runner scores` prints. STEP as for `cells`."""
        scoring = [s for s in self.manifest.steps if s.op in ("score", "compare")]
        for record in scoring:
            names = {record.id, f"{record.index:02d}-{record.id or record.op}", record.index}
            if step in names:
                return list(record.scores or [])
        known = [s.id or f"{s.index:02d}-{s.op}" for s in scoring]
        raise RunDirError(
            f"no score or compare step {step!r} in {self.dir} (they are: {known or 'none'})"
        )

    def _cells(self, record: StepRecord) -> list[Cell]:
        from runner.record import cells, layout
        from runner.record.trust import run_file

        listed = [o.path for o in record.outputs if o.path.endswith("/" + layout.CELLS)]
        if not listed:
            return []
        folder = listed[0].rpartition("/")[0]
        return [
            Cell(
                c.row,
                c.adapters,
                c.prompt,
                c.seed,
                c.text,
                c.token_ids,
                None if c.image is None else run_file(self.dir, f"{folder}/{c.image}"),
            )
            for c in cells.read_run(self.dir, listed[0])
        ]


class NoSuchStep(KeyError):
    """`run.outputs[ID]` for an ID no step with outputs has; says which ones there are."""

    def __str__(self) -> str:
        return str(self.args[0])


class Outputs(dict[str, "list[Text] | list[Picture]"]):
    """A run's outputs by step id; a missing id names the ids there are."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def __missing__(self, key: str) -> list[Text] | list[Picture]:
        known = ", ".join(repr(k) for k in self) or "none"
        raise NoSuchStep(f"no step {key!r} with outputs in {self.run_dir} (steps: {known})")


@dataclass
class Cell:
    """One cell of a compare step: its row, prompt and seed, and its text or image file."""

    row: str  # the row's label: `base`, `a, b` or `a=0.7, b=0.5`
    adapters: dict[str, Weight] | None  # None for `base`
    prompt: str
    seed: int
    text: str | None = None
    token_ids: list[int] | None = None
    file: Path | None = None  # the cell's PNG

    @property
    def image(self) -> Image | None:
        if self.file is None:
            return None
        from PIL import Image

        with Image.open(self.file) as opened:
            opened.load()
            return opened


def _as_outputs(cells: list[Cell]) -> list[Text] | list[Picture]:
    texts = [
        Text(c.prompt, c.text or "", c.token_ids or [], c.seed, c.adapters)
        for c in cells
        if c.file is None
    ]
    pictures = [Picture(c.file, c.prompt, c.seed, c.adapters) for c in cells if c.file is not None]
    return texts or pictures


def _read_outputs(run_dir: Path, paths: list[str]) -> list[Text] | list[Picture]:
    from runner.record import completions, layout
    from runner.record.trust import run_file

    texts: list[Text] = []
    pictures: list[Picture] = []
    for rel in paths:
        file = run_file(run_dir, rel)
        if Path(rel).name == layout.COMPLETIONS:
            texts += [
                Text(c.prompt, c.text, c.token_ids, c.seed, c.adapters)
                for c in completions.read_run(run_dir, rel)
            ]
        elif rel.endswith(".png"):
            from runner.record.pnginfo import read_png_metadata

            info = read_png_metadata(file)
            adapters = json.loads(info.get("adapters", "null"))
            pictures.append(
                Picture(file, info.get("prompt", ""), int(info["seed"]), adapters, info)
            )
    return texts or pictures


def run(
    spec: Spec | str | Path | dict[str, Any],
    out: str | Path = "runs",
    device: str | None = None,
    progress: Callable[[str], None] | bool | None = None,
    ticker: Ticker | None = None,
) -> Run:
    """Execute SPEC into a new run directory under OUT; raises StepError (with .run_dir).

    PROGRESS: a function that gets each progress line (the model's load, a line per step,
    what a step made); True shows progress, a bar within long steps (tqdm's, notebook-aware,
    where tqdm is installed) and those lines on stderr; False, nothing; None (the default):
    shown in a Jupyter notebook, nothing elsewhere. TICKER, with a function: progress
    within a step and the libraries' notes.
    """
    from runner.running.interpreter import Overrides, execute
    from runner.running.notebook import display, in_notebook
    from runner.spec.types import Spec as SpecType

    _check_device(device)
    typed = spec if isinstance(spec, SpecType) else load_spec(spec)
    shown = in_notebook() if progress is None else progress
    if shown is True and ticker is None:
        with display() as bars:
            run_dir = execute(typed, Path(out), Overrides(device=device), bars.line, bars)
        return open_run(run_dir)
    lines = shown if callable(shown) else (lambda line: None)
    run_dir = execute(typed, Path(out), Overrides(device=device), lines, ticker)
    return open_run(run_dir)


def run_many(
    specs: Sequence[Spec | str | Path | dict[str, Any]],
    out: str | Path = "runs",
    device: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
    ray: bool | str = False,
    workers: int | None = None,
) -> Many:
    """Run several specs, each into its own run directory under OUT; -> Many, whose
    .outcomes say, spec by spec and in order, status, run directory and seconds.

    Every spec is checked first: one invalid spec raises SpecError and nothing runs. Specs
    that share a base model reuse it. A failing spec does not stop the others; an interrupt
    stops them all (.interrupted). RAY: True starts a local Ray (or uses the one this
    process started), "auto" or an address joins a cluster; WORKERS: how many CPU workers
    when the cluster has no GPU, else how many of its GPUs to use.
    """
    from runner.running.interpreter import Overrides

    _check_device(device)
    typed = load_specs(specs)
    if ray is False:
        from runner.running.many import run_many as sequential

        return sequential(typed, Path(out), Overrides(device=device), progress)
    from runner.running.ray_pool import run_on_ray

    address = None if ray is True else str(ray)
    return run_on_ray(typed, Path(out), Overrides(device=device), progress, address, workers)


def load_specs(specs: Sequence[Spec | str | Path | dict[str, Any]]) -> list[Spec]:
    """Every spec typed; raises one SpecError with the problems of all that are invalid."""
    from runner.spec.types import Spec as SpecType

    typed: list[SpecType] = []
    problems: list[Located] = []
    for spec in specs:
        try:
            typed.append(spec if isinstance(spec, SpecType) else load_spec(spec))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return typed


def resume(
    run_dir: Run | str | Path,
    out: str | Path | None = None,
    spec: str | Path | None = None,
    device: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Run:
    """Continue a failed or interrupted run into a new run directory (beside it unless OUT)
    that records `resumed_from`: adapter steps replayed, finished outputs taken after their
    sha256 is checked, the rest computed. SPEC: the spec to continue with, by default the
    file the run was made from. Raises Refused when the spec or an input file changed.
    """
    from runner.running.resume import resume as continue_run
    from runner.running.resume import spec_to_resume

    _check_device(device)
    old = _dir(run_dir)
    file, base_dir = spec_to_resume(old, Path(spec) if spec is not None else None)
    typed = load_spec(file, base_dir=base_dir)
    new = continue_run(typed, old, Path(out) if out is not None else None, device, progress)
    return open_run(new)


@dataclass(frozen=True)
class Reproduction:
    """A run made again: the new run, how it compares with the old, and (when the outputs
    differ) everything else recorded that differs between the two, phrased for humans."""

    run: Run
    report: DiffReport
    causes: list[str]

    @property
    def same(self) -> bool:
        """Every output identical, made from the same inputs (a reproduction on other inputs
        is no reproduction)."""
        return self.report.reproduced


def reproduce(
    run_dir: Run | str | Path,
    out: str | Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
    ticker: Ticker | None = None,
) -> Reproduction:
    """Run a recorded spec again with its recorded name, seed, device, dtype and threads into
    a new run directory (beside the old one unless OUT), and compare every output."""
    from runner.audit.diff import diff as compare
    from runner.audit.diff import likely_causes
    from runner.running.reproduce import reproduce as run_again

    old = _dir(run_dir)
    new = open_run(run_again(old, Path(out) if out is not None else None, progress, ticker))
    report = compare(old, new.dir)
    causes = [] if report.reproduced else likely_causes(open_run(old).manifest, new.manifest)
    return Reproduction(new, report, causes)


def _check_device(device: str | None) -> None:
    """The spec's device rule, for a device given to the API: refused before anything runs."""
    from runner.spec.checks import device_problem

    problem = None if device is None else device_problem(device)
    if problem:
        raise Refused(problem)


def open_run(run_dir: str | Path) -> Run:
    """Any run directory, read without a model; raises RunDirError for what is not one."""
    from runner.record.manifest import read

    folder = Path(run_dir)
    return Run(folder, read(folder))


def _dir(run: Run | str | Path) -> Path:
    return run.dir if isinstance(run, Run) else Path(run)


def verify(run: Run | str | Path) -> VerifyReport:
    """Every file of a run against its checksums: .ok, .missing, .changed, .extra."""
    from runner.audit.checksums import verify as check

    return check(_dir(run))


def write_report(run: Run | str | Path, out: str | Path | None = None) -> Path:
    """Render a run's report page again from its directory alone; returns where it went.

    OUT defaults to RUN_DIR/report.html. No model library is loaded.
    """
    from runner.report.html import write

    return write(_dir(run), None if out is None else Path(out))


def diff(run_a: Run | str | Path, run_b: Run | str | Path) -> DiffReport:
    """What differs between two runs: .same, and the sections of `runner diff`."""
    from runner.audit.diff import diff as compare

    return compare(_dir(run_a), _dir(run_b))
