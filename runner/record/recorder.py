"""What a run records: its manifest, its step journal and the step outputs.

Recording is linear in the work: the manifest is written whole when the run starts, when
its inputs are known and when it ends; each finished step is one journal line. Every file
reaches the operating system before the step is recorded (a killed process loses nothing)
and the disk soon after, through a Syncer, so the steps never wait for it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from runner.errors import RunDirError, printable
from runner.meta import __version__
from runner.record import completions, layout, rundir
from runner.record import manifest as m
from runner.record.completions import Completed
from runner.record.files import Syncer, sha256_bytes, write_atomic
from runner.record.samplers import sampler_name
from runner.record.trust import rel_problem
from runner.results import Completion, GeneratedImage, ModelSetup, SchedulerUsed
from runner.spec.types import Adapter, Spec, resolved
from runner.spec.weights import Weight

T = TypeVar("T")


@dataclass
class Recorder:
    """Owns one run directory; every write goes through it, whole or not at all."""

    run: Path
    manifest: m.Manifest
    sums: dict[str, str] = field(default_factory=dict)  # relpath -> sha256 of what it wrote
    _journal: BinaryIO | None = None
    _syncer: Syncer = field(default_factory=Syncer)

    @classmethod
    def start(
        cls, out: Path, spec: Spec, *, folder: Path | None = None, origin: m.Origin | None = None
    ) -> Recorder:
        """A new run directory under OUT, or FOLDER when one was made for it beforehand."""
        from runner.record.environment import git_commit

        digest = sha256_bytes(spec.raw)
        manifest = m.Manifest(
            status="running",
            started=rundir.utc_now(),
            runner={"version": __version__, "git_commit": git_commit()},
            spec=m.SpecRecord(
                file=str(spec.file.resolve()),
                sha256=digest,
                name=spec.name,
                base_dir=str(spec.base_dir),
            ),
            origin=origin or m.Origin(),
            inputs=m.Inputs(data=data_inputs(spec)),
        )
        rec = cls(folder or rundir.create(out, spec.name, digest), manifest)
        rec.write(layout.SPEC, spec.raw)
        rec.write(layout.RESOLVED, m.to_json(resolved(spec)))
        rec.save()
        return rec

    @property
    def spec_sha256(self) -> str:
        return self.manifest.spec.sha256

    def write(self, rel: str, data: bytes) -> m.Output:
        """Write one file of the run, whole or not at all; never outside the run (REL is a
        plain relative path). A failure (a full disk, a read-only folder) is a RunDirError
        naming the file."""
        problem = rel_problem(rel)
        if problem:
            raise RunDirError(printable(f"{self.run}: {rel!r} {problem}"))
        try:
            digest = write_atomic(self.run / rel, data, self._syncer)
        except OSError as exc:
            raise unwritable(self.run / rel, exc) from exc
        self.sums[rel] = digest
        return m.Output(rel, digest)

    def write_together(self, files: dict[str, bytes]) -> list[m.Output]:
        """Write FILES (relpath -> bytes), each whole, with Ctrl-C and SIGTERM held until
        the last is written: files that only make sense together are never split by a
        stop."""
        with _signals_held():
            return [self.write(rel, data) for rel, data in files.items()]

    def remove(self, rel: str) -> None:
        """Take a file the run wrote earlier out of it (and out of SHA256SUMS)."""
        if self.sums.pop(rel, None) is not None:
            try:
                (self.run / rel).unlink(missing_ok=True)
            except OSError as exc:
                raise unwritable(self.run / rel, exc) from exc

    def save(self) -> bytes:
        """Write the manifest whole and return it; while running, its steps live in the
        journal."""
        steps = self.manifest.steps
        if not self.manifest.finished:
            self.manifest.steps = []
        try:
            data = m.manifest_bytes(self.manifest)
            self.write(layout.MANIFEST, data)
        finally:
            self.manifest.steps = steps
        return data

    def prepared(
        self,
        environment: dict[str, Any],
        settings: m.Settings,
        model: m.Identity,
        setup: ModelSetup | None = None,
    ) -> None:
        """The environment, settings, model identity and setup, once the model is loaded."""
        self.manifest.environment, self.manifest.settings = environment, settings
        self.manifest.inputs.model = model
        if setup is not None:
            self.manifest.model_setup = m.ModelSetupRecord(
                scheduler=scheduler_record(setup.scheduler),
                components_left_out=list(setup.components_left_out),
                attn_implementation=setup.attn_implementation,
                quantization=setup.quantization,
            )
        self.save()

    def step(self, record: m.StepRecord) -> None:
        """Append one finished (or stopped) step to the journal.

        The line reaches the operating system at once, after the step's outputs, so a
        killed process loses nothing; the syncer puts it on disk.
        """
        try:
            if self._journal is None:
                self._journal = open(self.run / layout.JOURNAL, "ab")  # noqa: SIM115 - see seal
            self._journal.write(m.journal_line(record))
            self._journal.flush()
            self._syncer.keep(self._journal.fileno())
        except OSError as exc:
            raise unwritable(self.run / layout.JOURNAL, exc) from exc
        finally:
            self.manifest.steps.append(record)

    def end(self, status: str, error: m.Failure | None = None) -> bytes:
        """Record the end in the manifest, written whole; returns it as written."""
        self.manifest.status, self.manifest.ended, self.manifest.error = (
            status,
            rundir.utc_now(),
            error,
        )
        return self.save()

    def seal(self, strict: bool = True, journal_served: bool = True) -> None:
        """Every file of the run on disk, the journal gone (once the manifest holds its
        steps: JOURNAL_SERVED), then SHA256SUMS. Unless STRICT, a part that cannot be
        written is left and the next is tried (a failed run on a full disk keeps what it can).
        """
        attempt(self._syncer.close, strict)  # every file on disk, before the list of them
        if self._journal is not None:
            attempt(self._journal.close, strict)
        if journal_served:
            attempt(lambda: (self.run / layout.JOURNAL).unlink(missing_ok=True), strict)
        attempt(self._sums, strict)

    def _sums(self) -> None:
        try:
            rundir.write_sums(self.run, self.sums)
        except OSError as exc:
            raise unwritable(self.run / layout.SUMS, exc) from exc

    def outputs(
        self,
        folder: str,
        results: list[Completion] | list[GeneratedImage],
        adapters: dict[str, Weight] | None,
    ) -> list[m.Output]:
        """Write a generate step's results; how depends on what they are."""
        if not results:
            return []
        return WRITERS[type(results[0])](self, folder, results, adapters)

    def completions(
        self, folder: str, items: list[Completion], adapters: dict[str, Weight] | None
    ) -> list[m.Output]:
        lines = [
            completions.line(Completed(c.prompt, c.text, c.token_ids, c.seed, adapters))
            for c in items
        ]
        return [self.write(f"{folder}/{layout.COMPLETIONS}", "".join(lines).encode("utf-8"))]

    def pictures(
        self, folder: str, items: list[GeneratedImage], adapters: dict[str, Weight] | None
    ) -> list[m.Output]:
        from runner.record.civitai import hashes
        from runner.record.pnginfo import png_bytes

        named = hashes(self.manifest)
        return [
            self.write(
                f"{folder}/{layout.picture(k)}",
                png_bytes(
                    picture,
                    adapters=adapters,
                    spec_sha256=self.spec_sha256,
                    runner_version=__version__,
                    hashes=named,
                ),
            )
            for k, picture in enumerate(items)
        ]

    def inputs_adapter(self, name: str, identity: m.Identity) -> None:
        """An adapter's identity, recorded as soon as it is loaded."""
        self.manifest.inputs.adapters[name] = identity
        self.save()

    def inputs_clip(self, path: str, identity: m.Identity) -> None:
        """A clip_score model's identity, recorded as soon as it is loaded."""
        self.manifest.inputs.clip[path] = identity
        self.save()

    def load_report(self, name: str, report: m.LoadReport) -> None:
        """What loading adapter NAME did (written with the next manifest save)."""
        self.manifest.adapters.setdefault(name, m.AdapterRecord()).load = report
        self.save()

    def input_identity(self, name: str, adapter: Adapter, local: Path | None) -> None:
        """An adapter's identity, recorded as soon as it is loaded."""
        from runner.record.identity import identify

        if adapter.config is not None:
            config = {"type": adapter.config.type, **adapter.config.options}
            entry = m.Identity(path=None, config=config)
        else:
            entry = identify(adapter.path or "", local, adapter.revision, adapter.subfolder)
        self.inputs_adapter(name, entry)


def data_inputs(spec: Spec) -> dict[str, m.DataInput]:
    """The spec's data files as the manifest records them among its inputs."""
    return {
        name: m.DataInput(found.written, found.sha256, len(found.records), str(found.path))
        for name, found in spec.data.items()
    }


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (where the platform can hold them)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def unwritable(path: Path, exc: OSError) -> RunDirError:
    """A failed write as one line naming its file: `PATH: cannot be written (why)`."""
    return RunDirError(printable(f"{path}: cannot be written ({exc.strerror or exc})"))


def attempt(part: Callable[[], T], strict: bool) -> T | None:
    """PART's result; None when it failed to write and STRICT is false."""
    try:
        return part()
    except (OSError, RunDirError):
        if strict:
            raise
        return None


def scheduler_record(used: SchedulerUsed | None) -> m.SchedulerRecord | None:
    """A scheduler as the manifest records it, with its usual sampler name where one matches."""
    if used is None:
        return None
    return m.SchedulerRecord(used.type, dict(used.config), sampler_name(used.type, used.config))


WRITERS: dict[type, Callable[..., list[m.Output]]] = {
    Completion: Recorder.completions,
    GeneratedImage: Recorder.pictures,
}
