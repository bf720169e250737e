"""The runner's exceptions; the CLI turns them into exit codes in one place.

RunnerError              any error a user can act on (never shown with a traceback)
├── SpecError            the spec is invalid: a list of located messages   -> exit 1
├── StepError            a step failed while running                      -> exit 2
├── RunDirError          a run directory is missing, unreadable or unwritable -> exit 1
│                        (exit 2 from `runner run`, whose spec was valid)
└── Refused              refused before anything ran (resuming a run whose spec or
                         inputs changed)                                  -> exit 1
Interrupted (BaseException) SIGINT or SIGTERM arrived                      -> exit 130
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class RunnerError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


@dataclass(frozen=True, order=True)
class Located:
    """One spec problem at FILE:LINE:COL, pointing at the json path of the field."""

    line: int
    col: int
    path: str
    message: str
    file: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class SpecError(RunnerError):
    """A spec failed validation; carries every problem found, sorted by position."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StepError(RunnerError):
    """A step failed at run time; the message already names file, line and step."""

    run_dir: Path | None = None  # the run directory that keeps what finished


class RunDirError(RunnerError):
    """A run directory cannot be read as one."""


class Refused(RunnerError):
    """Refused before anything ran; the message says why (e.g. what changed since a run)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a run stops and is recorded as interrupted."""

    run_dir: Path | None = None  # the run directory that keeps what finished, if any
