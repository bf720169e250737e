"""The `runner` command line: each command parses options, calls one API function, prints."""

from __future__ import annotations

import gc
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import click

from runner.errors import Interrupted, Refused, RunnerError, SpecError, StepError, describe
from runner.meta import __version__
from runner.spec.vocabulary import DEVICE_MESSAGE

EXIT_OK, EXIT_INVALID, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_EXPECTATIONS = 4  # `runner run`: the run succeeded, but an `expect:` of a step failed
BY_COMMAND = -1  # a run-directory or filesystem error: the command says what it means
# The one table from an error to its exit code: the first class it is an instance of wins.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (Interrupted, EXIT_INTERRUPTED),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
    (SpecError, EXIT_INVALID),
    (Refused, EXIT_INVALID),
    (StepError, EXIT_FAILED),
    (RunnerError, BY_COMMAND),
    (OSError, BY_COMMAND),
    (Exception, EXIT_INTERNAL),  # a bug of the runner: shown with its traceback
)
LOCAL_RAY = "local"  # what `--ray` alone stands for: start a Ray on this machine


def exit_code(exc: BaseException, failed: int = EXIT_INVALID) -> int:
    """EXC's exit code by EXIT_CODES; FAILED where the table leaves it to the command."""
    code = next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), EXIT_INTERNAL)
    return failed if code == BY_COMMAND else code


def _errors(failed: int = EXIT_INVALID) -> Callable[[Callable[..., int]], Callable[..., None]]:
    """The one place where errors become messages and exit codes; FAILED is what a
    run-directory or filesystem error means for this command."""

    def decorate(command: Callable[..., int]) -> Callable[..., None]:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            debug = click.get_current_context().find_root().params.get("debug", False)
            try:
                with _interruptible():
                    code = command(*args, **kwargs)
            except (Exception, KeyboardInterrupt, Interrupted) as exc:
                code = exit_code(exc, failed)
                _say(exc, code, debug)
            sys.exit(code)

        return wrapper

    return decorate


def _say(exc: BaseException, code: int, debug: bool) -> None:
    """What the user reads on stderr about EXC, which ends the command with CODE."""
    kept = getattr(exc, "run_dir", None)
    if code == EXIT_INTERRUPTED:
        click.echo("interrupted" + (f"; what finished is kept in {kept}" if kept else ""), err=True)
        if kept:
            click.echo(str(kept))
        return
    if code == EXIT_INTERNAL or debug:
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    if code == EXIT_INTERNAL:
        click.echo(
            f"internal error (a bug of the runner, please report it): {describe(exc)}", err=True
        )
    elif isinstance(exc, SpecError):
        click.echo(str(exc), err=True)
    else:
        click.echo(f"error: {_one_line(exc)}", err=True)
    if kept:
        click.echo(f"what finished is kept in {kept}", err=True)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM stop any command the same way: Interrupted, exit 130."""

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


@click.group()
@click.version_option(__version__, prog_name="runner")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option(
    "--verbose", is_flag=True, help="Let the libraries print their own logs and progress bars."
)
def main(debug: bool, verbose: bool) -> None:
    """Run declarative PEFT adapter pipelines on transformers and diffusers models."""


def entry() -> None:
    """The `runner` command: `main`, in a process that ends with it.

    What the command made is frozen for the cycle collector before the process exits, so
    that exiting does not walk every object torch and transformers made, pass after pass,
    only to free memory the operating system takes back anyway: about 0.8 s after a run.
    atexit handlers, logging's shutdown and the flush of the standard streams still run.
    """
    try:
        main()
    finally:
        gc.freeze()


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_errors()
def validate(specs: tuple[Path, ...]) -> int:
    """Check SPECS against the schema and the meaning checks; print every error."""
    import runner

    code = EXIT_OK
    for spec in specs:
        problems = runner.validate(spec)
        for problem in problems:
            click.echo(str(problem), err=True)
        if problems:
            code = EXIT_INVALID
        else:
            click.echo(f"{spec}: ok")
    return code


@main.command()
@_errors()
def schema() -> int:
    """Print the spec's JSON Schema."""
    from runner.spec.schema import schema_text

    click.echo(schema_text(), nl=False)
    return EXIT_OK


@main.command()
@click.argument("specs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder that receives the run directories (default: runs; with --resume, beside "
    "RUN_DIR; with --ray, a folder every worker sees).",
)
@click.option(
    "--device", help="Run on this device instead of the spec's (auto, cpu, cuda, cuda:N, mps)."
)
@click.option(
    "--ray",
    "ray",
    is_flag=False,
    flag_value=LOCAL_RAY,
    metavar="[ADDRESS]",
    help="Spread the specs over Ray: alone, a local Ray; `auto` or an address joins a cluster.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="With --ray: how many workers (CPU workers where the cluster has no GPU).",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    metavar="RUN_DIR",
    help="Continue a failed or interrupted run into a new run directory.",
)
@_errors(failed=EXIT_FAILED)
def run(
    specs: tuple[Path, ...],
    out: Path | None,
    device: str | None,
    ray: str | None,
    workers: int | None,
    resume: Path | None,
) -> int:
    """Validate SPECS, execute them and print the run directory (several: a table)."""
    import runner
    from runner.running.progress import Reporter

    specs, ray = _ray_value_may_be_a_spec(specs, ray)
    problem = _run_options(specs, device, ray, workers, resume)
    if problem:
        click.echo(f"error: {problem}", err=True)
        return EXIT_INVALID
    if resume is not None:
        spec = specs[0] if specs else None
        with Reporter(sys.stderr, verbose=_verbose()) as shown:
            done = runner.resume(resume, out=out, spec=spec, device=device, progress=shown.line)
        click.echo(str(done.dir))
        return _expected(done.manifest.failed_expectations())
    out = out or Path("runs")
    if len(specs) == 1 and ray is None:
        loaded = runner.load_spec(specs[0])
        with Reporter(sys.stderr, verbose=_verbose()) as shown:
            done = runner.run(loaded, out=out, device=device, progress=shown.line, ticker=shown)
        click.echo(str(done.dir))
        return _expected(done.manifest.failed_expectations())
    return _run_many(specs, out, device, ray, workers)


def _ray_value_may_be_a_spec(
    specs: tuple[Path, ...], ray: str | None
) -> tuple[tuple[Path, ...], str | None]:
    """`--ray a.yaml b.yaml`: a Ray address is never a spec file, so the first is a spec."""
    if (
        ray is not None
        and ray != LOCAL_RAY
        and (ray.endswith((".yaml", ".yml")) or Path(ray).is_file())
    ):
        return (Path(ray), *specs), LOCAL_RAY
    return specs, ray


def _run_options(
    specs: tuple[Path, ...],
    device: str | None,
    ray: str | None,
    workers: int | None,
    resume: Path | None,
) -> str | None:
    """What is wrong with the options of `run`, or None."""
    from runner.spec.checks import device_problem

    if device is not None and device_problem(device):
        return f"--device: {DEVICE_MESSAGE}, found '{device}'"
    if resume is not None and (len(specs) > 1 or ray is not None):
        return "--resume continues one run: give at most one SPEC, and no --ray"
    if resume is None and not specs:
        return "give a SPEC to run (or --resume RUN_DIR)"
    if workers is not None and ray is None:
        return "--workers goes with --ray"
    if ray is not None:
        from runner.running.ray_pool import missing_ray

        problem = missing_ray()
        return None if problem is None else f"--ray: {problem}"
    return None


def _run_many(
    specs: tuple[Path, ...], out: Path, device: str | None, ray: str | None, workers: int | None
) -> int:
    """Every spec validated first, then run; a table of outcomes on stdout."""
    import runner
    from runner.running.many import left_over, table
    from runner.running.progress import Reporter

    typed, invalid = [], False
    for spec in specs:
        try:
            typed.append(runner.load_spec(spec))
        except SpecError as exc:
            click.echo(str(exc), err=True)
            invalid = True
    if invalid:
        return EXIT_INVALID
    address = True if ray == LOCAL_RAY else (ray or False)
    with Reporter(sys.stderr, verbose=_verbose()) as shown:
        many = runner.run_many(
            typed, out=out, device=device, progress=shown.line, ray=address, workers=workers
        )
    click.echo(table(many))
    if many.interrupted:
        rest = left_over(many, out)
        click.echo("interrupted; what finished is kept" + (", the rest:" * bool(rest)), err=True)
        click.echo("\n".join(f"  {line}" for line in rest), err=True, nl=bool(rest))
        return EXIT_INTERRUPTED
    if not many.ok:
        return EXIT_FAILED
    return EXIT_EXPECTATIONS if many.expectations_failed else EXIT_OK


def _expected(failed: list[str]) -> int:
    """A succeeded run's exit code: 4 where an expectation failed (named on stderr)."""
    if not failed:
        return EXIT_OK
    click.echo(f"expectations failed: {', '.join(failed)}", err=True)
    return EXIT_EXPECTATIONS


def _verbose() -> bool:
    return bool(click.get_current_context().find_root().params.get("verbose"))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_errors()
def verify(run_dir: Path) -> int:
    """Check every file of RUN_DIR against its SHA256SUMS."""
    import runner
    from runner.audit.checksums import format_verify

    report = runner.verify(run_dir)
    click.echo(format_verify(run_dir, report))
    return EXIT_OK if report.ok else EXIT_INVALID


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for the new run (default: beside RUN_DIR).",
)
@_errors()
def reproduce(run_dir: Path, out: Path | None) -> int:
    """Run RUN_DIR's spec again with its recorded settings and compare every output."""
    import runner
    from runner.audit.diff import format_outputs
    from runner.running.progress import Reporter

    with Reporter(sys.stderr, verbose=_verbose()) as shown:
        again = runner.reproduce(run_dir, out, shown.line, shown)
    click.echo(f"reproduced into {again.run.dir}")
    click.echo(format_outputs(again.report.outputs))
    if again.report.other_inputs:
        click.echo("inputs changed since the run, so this is no reproduction:")
        click.echo("\n".join(f"  {line}" for line in again.report.other_inputs))
    if again.same:
        click.echo("every output is identical")
        return EXIT_OK
    if again.report.outputs_same:
        click.echo("every output is identical, but from other inputs")
        return EXIT_INVALID
    click.echo("outputs differ; what else differs between the runs:")
    click.echo("\n".join(f"  {c}" for c in again.causes) or "  nothing recorded differs")
    return EXIT_INVALID


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Write the page here instead of RUN_DIR/report.html.",
)
@_errors()
def report(run_dir: Path, out: Path | None) -> int:
    """Render RUN_DIR's report page again from its files alone, without a model."""
    import runner

    click.echo(str(runner.write_report(run_dir, out)))
    return EXIT_OK


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the rows as CSV.")
@_errors()
def scores(run_dirs: tuple[Path, ...], as_json: bool, as_csv: bool) -> int:
    """A leaderboard of every score step's rows across RUN_DIRS (a markdown table)."""
    from runner.audit import leaderboard

    found = leaderboard.entries(list(run_dirs))
    shown = (
        leaderboard.as_json if as_json else leaderboard.as_csv if as_csv else leaderboard.markdown
    )
    click.echo(shown(found).rstrip("\n"))
    return EXIT_OK


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors()
def diff(run_a: Path, run_b: Path, as_json: bool) -> int:
    """Show what differs between two runs: spec, environment, inputs, outputs."""
    import json

    import runner

    report = runner.diff(run_a, run_b)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_text())
    return EXIT_OK if report.same else EXIT_INVALID
