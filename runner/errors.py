"""The runner's exceptions; the CLI turns them into exit codes in one place.

RunnerError              any error a user can act on (never shown with a traceback)
├── SpecError            the spec is invalid: a list of located messages   -> exit 1
├── StepError            a step failed while running                      -> exit 2
│   └── SourceError      a model or adapter file is not what the spec says (validation
│                        reports it at the spec's line, before anything loads)
├── RunDirError          a run directory is missing, unreadable or unwritable -> exit 1
│                        (exit 2 from `runner run`, whose spec was valid)
└── Refused              refused before anything ran (resuming a run whose spec or
                         inputs changed)                                  -> exit 1
Interrupted (BaseException) SIGINT or SIGTERM arrived                      -> exit 130
any other exception      a bug of the runner: recorded in the manifest, printed with its
                         traceback as "internal error"                    -> exit 3
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Control characters, line and paragraph separators, and bidirectional overrides: printed
# raw, a value holding one could break an error line in two or make it read otherwise.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """TEXT with every character that could break or disguise a line written as an escape."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def describe(exc: BaseException) -> str:
    """An unexpected library error as one line: its type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def environmental(exc: BaseException) -> bool:
    """EXC comes from the machine, not from a bug: a full disk, a missing file, no memory
    (MemoryError, or torch's OutOfMemoryError, a RuntimeError known here by its name)."""
    return isinstance(exc, (OSError, MemoryError)) or type(exc).__name__ == "OutOfMemoryError"


class RunnerError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


@dataclass(frozen=True, order=True)
class Located:
    """One spec problem at FILE:LINE:COL, pointing at the json path of the field.

    Line 0 is no position: a spec given as data has no lines, and its problem reads
    `FILE: PATH: MESSAGE`. A problem inside a step is printed with the step as run errors
    and progress name it, counted from 1 (`step 2 (generate): max_new_tokens: ...`), while
    PATH keeps JSON's count from 0 (`steps[1].max_new_tokens`) for tools.
    """

    line: int
    col: int
    path: str
    message: str
    file: str = ""
    step: str = ""  # `step 2 (generate)` when PATH is inside steps[1]

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        field = self.path
        if self.step:
            inner = _STEP_PATH.match(self.path)
            rest = inner.group(2) if inner else ""
            field = f"{self.step}: {rest}" if rest else self.step
        return printable(f"{where}: {field}: {self.message}")


_STEP_PATH = re.compile(r"steps\[(\d+)\]\.?(.*)\Z", re.S)


def step_label(path: str, ops: list[object]) -> str:
    """`step N (op)` for a PATH inside the spec's steps (OPS: each step's op as written),
    counted from 1 as a run counts; '' for any other path."""
    inner = _STEP_PATH.match(path)
    if not inner:
        return ""
    index = int(inner.group(1))
    op = ops[index] if index < len(ops) else None
    return f"step {index + 1}" + (f" ({op})" if isinstance(op, str) and op.isidentifier() else "")


class SpecError(RunnerError):
    """A spec failed validation; carries every problem found, sorted by position."""

    def __init__(self, problems: list[Located]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StepError(RunnerError):
    """A step failed at run time; the message already names file, line and step."""

    run_dir: Path | None = None  # the run directory that keeps what finished


class SourceError(StepError):
    """A model or adapter source cannot be what the spec says: WHERE (a file or folder), why."""

    def __init__(self, where: Path | None, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"'{where}' {reason}" if where is not None else reason)


class RunDirError(RunnerError):
    """A run directory cannot be read as one."""


class Refused(RunnerError):
    """Refused before anything ran; the message says why (e.g. what changed since a run)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a run stops and is recorded as interrupted."""

    run_dir: Path | None = None  # the run directory that keeps what finished, if any
