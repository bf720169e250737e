"""The `runner` command line: each command parses options, calls one function, prints."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import click

from runner import __version__
from runner.errors import RunnerError, SpecError, StepError

EXIT_OK, EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$")


def _errors(command: Callable[..., int]) -> Callable[..., None]:
    """The one place where runner errors become messages and exit codes."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            code = command(*args, **kwargs)
        except SpecError as exc:
            click.echo(str(exc), err=True)
            code = EXIT_INVALID
        except StepError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            if exc.run_dir:
                click.echo(f"what finished is kept in {exc.run_dir}", err=True)
            code = EXIT_FAILED
        except RunnerError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            code = EXIT_INVALID
        sys.exit(code)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="runner")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option(
    "--verbose", is_flag=True, help="Let the libraries print their own logs and progress bars."
)
def main(debug: bool, verbose: bool) -> None:
    """Run declarative PEFT adapter pipelines on transformers and diffusers models."""


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_errors
def validate(specs: tuple[Path, ...]) -> int:
    """Check SPECS against the schema and the meaning checks; print every error."""
    from runner.spec.load import load

    code = EXIT_OK
    for spec in specs:
        try:
            load(spec)
            click.echo(f"{spec}: ok")
        except SpecError as exc:
            click.echo(str(exc))
            code = EXIT_INVALID
    return code


@main.command()
@_errors
def schema() -> int:
    """Print the spec's JSON Schema."""
    from runner.spec.schema import schema_text

    click.echo(schema_text(), nl=False)
    return EXIT_OK


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder that receives the run directory.",
)
@click.option(
    "--device", help="Run on this device instead of the spec's (auto, cpu, cuda, cuda:N, mps)."
)
@_errors
def run(spec: Path, out: Path, device: str | None) -> int:
    """Validate SPEC, execute it and print the run directory."""
    from runner.run.interpreter import Interrupted, Overrides, execute
    from runner.run.progress import Reporter
    from runner.spec.load import load

    if device is not None and not DEVICE.match(device):
        raise RunnerError(f"--device: expected auto, cpu, cuda, cuda:N or mps, found '{device}'")
    loaded = load(spec)
    with _interruptible():
        try:
            with Reporter(sys.stderr, verbose=_verbose()) as shown:
                run_dir = execute(loaded, out, Overrides(device=device), shown.line, shown)
        except Interrupted as exc:
            click.echo(f"interrupted; what finished is kept in {exc.run_dir}", err=True)
            click.echo(str(exc.run_dir))
            return EXIT_INTERRUPTED
    click.echo(str(run_dir))
    return EXIT_OK


def _verbose() -> bool:
    return bool(click.get_current_context().find_root().params.get("verbose"))


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM stop a run the same way: recorded as interrupted, exit 130."""
    from runner.run.interpreter import Interrupted

    def stop(signum: int, frame: object) -> None:
        for sig in previous:  # a second Ctrl-C must not cut short the recording of the first
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_errors
def verify(run_dir: Path) -> int:
    """Check every file of RUN_DIR against its SHA256SUMS."""
    from runner.audit.checksums import format_verify, verify

    report = verify(run_dir)
    click.echo(format_verify(run_dir, report))
    return EXIT_OK if report.ok else EXIT_INVALID


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for the new run (default: beside RUN_DIR).",
)
@_errors
def reproduce(run_dir: Path, out: Path | None) -> int:
    """Run RUN_DIR's spec again with its recorded settings and compare every output."""
    from runner.audit.diff import format_outputs, likely_causes
    from runner.audit.outputs import load_manifest
    from runner.audit.reproduce import reproduce as run_again
    from runner.run.progress import Reporter

    with _interruptible(), Reporter(sys.stderr, verbose=_verbose()) as shown:
        new_run, report = run_again(run_dir, out, shown.line, shown)
    click.echo(f"reproduced into {new_run}")
    click.echo(format_outputs(report.outputs))
    if report.outputs_same:
        click.echo("every output is identical")
        return EXIT_OK
    causes = likely_causes(load_manifest(run_dir), load_manifest(new_run))
    click.echo("outputs differ; what else differs between the runs:")
    click.echo("\n".join(f"  {c}" for c in causes) or "  nothing recorded differs")
    return EXIT_INVALID


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors
def diff(run_a: Path, run_b: Path, as_json: bool) -> int:
    """Show what differs between two runs: spec, environment, inputs, outputs."""
    import json

    from runner.audit.diff import diff as compare

    report = compare(run_a, run_b)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_text())
    return EXIT_OK if report.same else EXIT_INVALID
