"""Keep the libraries' own output off the runner's terminal, folding what matters into a note.

transformers, diffusers, peft and huggingface_hub each print progress bars and log
warnings to stderr by themselves. The runner shows its own progress instead, so a backend
turns theirs off (`silence`), collects what they say while it works (`captured`), drops the
known false alarms and hands the rest to the ticker as one short line (`fold`). With
`runner --verbose` none of this happens and the libraries speak for themselves.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.backends import Ticker

# The libraries whose loggers we capture; their children (transformers.modeling_utils...)
# propagate to these.
LOGGERS = ("transformers", "diffusers", "peft", "huggingface_hub", "accelerate")
# Not news anywhere: without torchvision, transformers picks a slower image-processor backend.
NOT_NEWS = re.compile(r"requires torchvision")
# False alarms on the documented adapter calls the backends make: transformers' load report
# lists the base weights (and other adapters') as missing from an adapter file, which they
# always are, and the backends check the fit themselves; peft warns that a model gets a
# second adapter, which is the point.
ADAPTER_FALSE_ALARMS = re.compile(r"requires torchvision|LOAD REPORT|Already found a `peft_config`")
# Deprecations speak to whoever wrote the calls (us), not to whoever runs a spec.
FOR_DEVELOPERS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
LIMIT = 200  # characters of a folded message
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # transformers colours its load report


def silence(family: str) -> None:
    """Turn the libraries' progress bars and info logs off for this process.

    Called before a backend imports its library: importing diffusers already logs.
    """
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as library_logging

    disable_progress_bars()
    libraries = [library_logging]
    if family == "diffusers":
        from diffusers.utils import logging as diffusers_logging

        libraries.append(diffusers_logging)
    for library in libraries:
        library.set_verbosity_error()
        library.disable_progress_bar()


@contextlib.contextmanager
def captured(verbose: bool = False) -> Iterator[list[str]]:
    """Collect the libraries' warnings (logged or warned) instead of printing them.

    Yields the list the messages are appended to when the block ends. Verbose: nothing is
    captured and the list stays empty.
    """
    said: list[str] = []
    if verbose:
        yield said
        return
    handler = _Collect(said)
    saved = []
    for name in LOGGERS:
        log = logging.getLogger(name)
        saved.append((log, log.level, log.handlers[:], log.propagate))
        log.handlers, log.propagate, log.level = [handler], False, logging.WARNING
    _levels_changed()
    try:
        with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
            yield said
    finally:
        for log, level, handlers, propagate in saved:
            log.handlers, log.propagate, log.level = handlers, propagate, level
        _levels_changed()
        said.extend(str(w.message) for w in caught if not issubclass(w.category, FOR_DEVELOPERS))


def _levels_changed() -> None:
    """What Logger.setLevel does after each change, done once for all: every logger's cached
    answer to isEnabledFor is dropped. (Once per block, not once per logger: with the
    thousands of loggers transformers makes, that was a millisecond a generate step.)"""
    logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


def fold(ticker: Ticker, what: str, said: list[str], ignore: re.Pattern[str] = NOT_NEWS) -> None:
    """Hand the ticker one note for what the libraries said about WHAT, IGNORE left out."""
    kept = list(dict.fromkeys(_short(m) for m in said if not ignore.search(m)))
    kept = [m for m in kept if m]
    if kept:
        more = f" (and {len(kept) - 1} more; --verbose shows them)" if len(kept) > 1 else ""
        ticker.note(f"{what}: {kept[0]}{more}")


def one_line(text: str, limit: int = LIMIT) -> str:
    """TEXT on one line, whitespace collapsed, cut to LIMIT characters."""
    flat = " ".join(ANSI.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _short(message: str) -> str:
    """One line; transformers' load report (a table of every key) becomes its counts."""
    text = ANSI.sub("", message)
    if "LOAD REPORT" in text:
        counts = Counter(re.findall(r"\|\s*(MISSING|UNEXPECTED|MISMATCH|CONVERSION)\s*\|", text))
        found = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
        return one_line(f"{text.splitlines()[0]}: {found or 'see --verbose'}")
    return one_line(text)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())
