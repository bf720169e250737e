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
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.backends.base import Ticker

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
    # diffusers imports bitsandbytes wherever it is installed (the `quant` extra), which
    # warns at import that an optional faster CPU kernel is missing: not news to a run.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    library_logging.set_verbosity_error()  # before diffusers, whose import makes it log
    library_logging.disable_progress_bar()
    if family == "diffusers":
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()


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
    _ROUTE.install()
    _ROUTE.sinks.append(said)
    try:
        with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
            yield said
    finally:
        _ROUTE.sinks[:] = [sink for sink in _ROUTE.sinks if sink is not said]  # not ==
        said.extend(str(w.message) for w in caught if not issubclass(w.category, FOR_DEVELOPERS))


@dataclass
class _Before:
    """A library's logger as it was before the route took it over."""

    level: int
    handlers: list[logging.Handler]
    propagate: bool


class _Route(logging.Handler):
    """The one handler of the libraries' loggers once a block was captured: a record goes to
    the innermost `captured` block, and outside any block where it went before, when the
    logger's level then let it through.

    Taking the loggers over once, rather than in and out for each block, keeps their levels
    still: every change of a level drops the cached answer of every logger in the process
    (thousands, once transformers is imported), which made a small model's generate step a
    fifth of a millisecond slower.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.sinks: list[list[str]] = []
        self.before: dict[str, _Before] = {}

    def install(self) -> None:
        """Take over the loggers not taken yet, or whose level was set since."""
        changed = False
        for name in LOGGERS:
            log = logging.getLogger(name)
            if log.handlers == [self] and log.level == logging.WARNING and not log.propagate:
                continue
            others = [h for h in log.handlers if h is not self]
            if self in log.handlers:  # changed since, e.g. by `set_verbosity_error()`
                before = self.before[name]
                before.handlers += others
                if log.level != logging.WARNING:
                    before.level = log.level
            else:
                self.before[name] = _Before(log.level, others, log.propagate)
            log.handlers, log.propagate, log.level = [self], False, logging.WARNING
            changed = True
        if changed:  # what Logger.setLevel does after a change
            logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]

    def emit(self, record: logging.LogRecord) -> None:
        if self.sinks:
            self.sinks[-1].append(record.getMessage())
            return
        before = self.before[record.name.partition(".")[0]]
        if record.levelno < (before.level or logging.getLogger().getEffectiveLevel()):
            return
        if before.handlers:
            for handler in before.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        elif before.propagate:
            logging.getLogger().handle(record)


_ROUTE = _Route()


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
