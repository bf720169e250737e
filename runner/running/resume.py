"""Continue a failed or interrupted run into a new run directory.

The new run replays every adapter step (load, set_adapters, disable, enable), takes the
outputs of each finished step whose kind declares them reusable from the old run (generate,
compare, score), after checking their sha256 against its manifest, with what its record
summarises of them (rows, scores, expectations), and computes only what is missing. Seeds
make every output independent of the steps that made others, so the result is what an
uninterrupted run gives. A train step the old run stopped in continues from the last
checkpoint it left there (checked against the old run's SHA256SUMS), to the same adapter.
A spec or an input file that changed since the old run refuses the resume, saying what
changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path

from runner.errors import Refused, RunDirError, printable
from runner.record import layout
from runner.record import manifest as m
from runner.record.files import sha256_bytes
from runner.record.rundir import read_sums
from runner.record.trust import (
    SPEC_LIMIT,
    open_regular,
    read_limited,
    read_run_file,
    run_file,
    sha256_run_file,
)
from runner.running.interpreter import Context, Made, Overrides, Setup, execute
from runner.sources import hub
from runner.spec.types import Spec, Step


def all_outputs(record: m.StepRecord) -> list[m.Output]:
    return list(record.outputs)


# A step kind whose outputs a resumed run may take instead of computing them: op -> which
# of a finished step's outputs to take. A kind qualifies when it leaves the model as it
# found it and its outputs depend only on the spec and the state before it.
REUSABLE: dict[str, Callable[[m.StepRecord], list[m.Output]]] = {
    "generate": all_outputs,
    "compare": all_outputs,  # a finished compare step whole; an unfinished one runs again
    "score": all_outputs,  # scores.jsonl; the rows' summaries come with the step's record
}


@dataclasses.dataclass
class Reuse:
    """The reuse hook: a finished step's outputs, copied from the old run when intact."""

    old_run: Path
    steps: dict[int, m.StepRecord]
    progress: Callable[[str], None]

    def __call__(self, ctx: Context, step: Step) -> Made | None:
        take = REUSABLE.get(step.op)
        old = self.steps.get(ctx.index)
        if take is None or old is None or old.status != "ok" or old.op != step.op:
            return None
        if old.active_adapters != ctx.state.running:  # cannot happen with the same spec
            return None
        wanted = take(old)
        copies = []
        for output in wanted:
            data = _intact(self.old_run, output)
            if data is None:
                shown = printable(f"{output.path} changed in {self.old_run}")
                self.progress(f"    {shown}: making it again")
                return None
            copies.append((output.path, data))
        written = [ctx.recorder.write(rel, data) for rel, data in copies]
        origin = os.path.abspath(self.old_run)  # never relative to the working directory
        return Made(
            written,
            [printable(f"{len(written)} output(s) taken from {origin}")],
            execution={**old.execution, "outputs_from": origin},
            rows=old.rows,
            scores=old.scores,  # a score step's summaries, a compare's metrics
            expectations=old.expectations,
        )

    def checkpoint(self, folder: str) -> dict[str, bytes] | None:
        """The checkpoint a train step of the old run left in FOLDER (file name -> bytes),
        when SHA256SUMS lists both files intact and checkpoint.json names the tensors file
        beside it; else None (the step trains from its start)."""
        names = (layout.CHECKPOINT_TENSORS, layout.CHECKPOINT_STATE)
        try:
            sums = read_sums(self.old_run)
        except RunDirError:
            sums = {}
        files = {}
        for name in names:
            rel = f"{folder}/{name}"
            data = _intact(self.old_run, m.Output(rel, sums[rel])) if rel in sums else None
            if data is None:
                if rel in sums:
                    self.progress(printable(f"    {rel} changed in {self.old_run}: not used"))
                return None
            files[name] = data
        try:
            state = json.loads(files[layout.CHECKPOINT_STATE])
            paired = state[layout.CHECKPOINT_TENSORS] == sha256_bytes(files[names[0]])
            done = int(state["steps_done"])
        except (ValueError, KeyError, TypeError):
            paired = False
        if not paired:  # a process killed between the two files' writes
            self.progress(f"    the checkpoint in {folder} is incomplete: not used")
            return None
        origin = os.path.abspath(self.old_run)
        self.progress(
            printable(f"    training continues from the checkpoint of step {done} in {origin}")
        )
        return files


def _intact(run_dir: Path, output: m.Output) -> bytes | None:
    """The bytes of OUTPUT of RUN_DIR when it is a regular file of the run (no link, no
    `..`, no FIFO) whose sha256 is the recorded one; else None. Hashed in chunks first, so
    that nothing unbounded is read."""
    try:
        if sha256_run_file(run_dir, output.path) != output.sha256:
            return None
        with open(open_regular(run_file(run_dir, output.path)), "rb") as f:
            data = f.read()
    except (RunDirError, OSError, ValueError):
        return None
    return data if sha256_bytes(data) == output.sha256 else None


def spec_to_resume(run_dir: Path, spec_file: Path | None = None) -> tuple[Path, Path | None]:
    """(the spec file to continue RUN_DIR with, the folder its paths resolve against).

    SPEC_FILE when given; else the file the run was made from, or the run's own copy when
    that file is gone. Refused when the run succeeded, or when that spec is not byte for
    byte the one that ran; the refusal shows what changed.
    """
    old = m.read(run_dir)
    if old.status == "succeeded":
        raise Refused(f"{run_dir} succeeded; there is nothing to resume")
    copy = run_dir / layout.SPEC
    recorded = read_run_file(run_dir, layout.SPEC, SPEC_LIMIT)
    if sha256_bytes(recorded) != old.spec.sha256:
        raise Refused(printable(f"{copy} is not the spec its manifest records"))
    original = Path(old.spec.file)
    chosen = spec_file or (original if original.is_file() else copy)
    try:
        now = recorded if chosen == copy else read_limited(chosen, SPEC_LIMIT, follow=True)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RunDirError(printable(f"{chosen}: cannot be read ({why})")) from None
    if now != recorded:
        diff = difflib.unified_diff(
            recorded.decode("utf-8", "replace").splitlines(),
            now.decode("utf-8", "replace").splitlines(),
            str(copy),
            str(chosen),
            lineterm="",
            n=0,
        )
        shown = [line for line in diff if not line.startswith("@@")][:12]
        raise Refused(
            f"cannot resume {run_dir}: {chosen} changed since it ran:\n"
            + "\n".join(shown)
            + f"\nto resume the spec as it ran, pass the run's copy: {copy}"
        )
    return chosen, Path(old.spec.base_dir) if chosen == copy else None


def resume(
    spec: Spec,
    run_dir: Path,
    out: Path | None = None,
    device: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Path:
    """Continue RUN_DIR with SPEC (from spec_to_resume) into a new run directory beside it
    (or under OUT) and return it. Refused when an input file changed since the run;
    StepError when a step fails."""
    old = m.read(run_dir)
    spec = dataclasses.replace(spec, name=old.spec.name)  # a copy named spec.yaml keeps its name
    changes = input_changes(spec, old)
    if changes:
        raise Refused(
            f"cannot resume {run_dir}: its inputs changed since it ran: " + "; ".join(changes)
        )
    overrides = recorded_settings(old, device)
    reuse = Reuse(run_dir, {s.index: s for s in old.steps}, progress)
    origin = m.Origin(resumed_from=os.path.abspath(run_dir))
    setup = Setup(reuse=reuse, origin=origin, checkpoint=reuse.checkpoint)
    return execute(spec, out or run_dir.parent, overrides, progress, setup=setup)


def input_changes(spec: Spec, old: m.Manifest) -> list[str]:
    """Each model, adapter or CLIP model file whose sha256 differs from what the old run
    recorded."""
    from runner.record.identity import identify

    lines: list[str] = []
    if old.inputs.model is not None:
        source = hub.model_source(spec.model, spec.base_dir)
        local = Path(source) if Path(source).exists() else None
        now = identify(spec.model.path, local, spec.model.revision)
        lines += _changed("model", old.inputs.model, now)
    for name, before in old.inputs.adapters.items():
        adapter = spec.adapters.get(name)
        if adapter is None:  # `default`, which came with an adapter folder as the model
            continue
        if adapter.config is not None:
            config = {"type": adapter.config.type, **adapter.config.options}
            if before.config != config:
                lines.append(f"adapter '{name}' config differs")
            continue
        local = hub.adapter_local(adapter, spec.base_dir)
        now = identify(adapter.path or "", local, adapter.revision)
        lines += _changed(f"adapter '{name}'", before, now)
    for path, before in old.inputs.clip.items():
        source = hub.clip_source(path, spec.base_dir)
        local = Path(source) if Path(source).exists() else None
        lines += _changed(f"clip model '{path}'", before, identify(path, local, None))
    return lines + data_changes(spec, old)


def data_changes(spec: Spec, old: m.Manifest) -> list[str]:
    """Each data file whose sha256 differs from what the old run recorded, or that is gone."""
    lines = []
    for name, before in old.inputs.data.items():
        now = spec.data.get(name)
        if now is None:
            lines.append(f"data '{name}' is no longer declared")
        elif now.sha256 != before.sha256:
            lines.append(
                f"data '{name}' file {now.written}: sha256 {before.sha256[:12]} -> "
                f"{now.sha256[:12]}"
            )
    return lines


def _changed(what: str, before: m.Identity, now: m.Identity) -> list[str]:
    lines = []
    for rel in sorted(set(before.files) | set(now.files)):
        a, b = before.files.get(rel), now.files.get(rel)
        if a != b:
            lines.append(
                f"{what} file {rel}: sha256 {(a or 'absent')[:12]} -> {(b or 'absent')[:12]}"
            )
    return lines


def recorded_settings(old: m.Manifest, device: str | None = None) -> Overrides:
    """The old run's device, dtype and threads: what makes the outputs the same (a resume
    and a reproduce alike); DEVICE, when asked for, must be the one it ran on."""
    settings = old.settings
    if settings is None:  # it stopped before its model loaded: nothing was recorded to keep
        return Overrides(device=device)
    if device is not None and device not in (settings.device, settings.device.split(":")[0]):
        raise Refused(
            f"the run ran on {settings.device}; resuming it on {device} would not give its "
            "outputs (leave the device out)"
        )
    return Overrides(settings.device, settings.dtype, settings.threads)
