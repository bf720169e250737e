"""Builtin models and adapters: tiny, seeded, made locally on first use, no download.

`builtin:NAME` in a spec resolves to a folder under the cache, built once by the
maker registered for NAME. Makers import torch and the HF libraries inside their
functions, so importing this package stays cheap for `runner validate`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

from runner.builtin.entry import PREFIX, Builtin
from runner.builtin.known import catalog
from runner.meta import cache_home

__all__ = ["PREFIX", "Builtin", "cache_root", "catalog", "resolve"]

# Who hears that a builtin is being made (it takes seconds): the running run's progress.
ANNOUNCE: ContextVar[Callable[[str], None]] = ContextVar("announce", default=lambda line: None)

# Bump when any maker's output changes, so old caches are not reused.
FORMAT = "2"


def cache_root() -> Path:
    return cache_home() / "builtin"


def resolve(name: str) -> Path:
    """Return the folder holding builtin NAME, making it on first use. Processes that need
    the same builtin at once (a batch's workers, a test suite's) make it once: the others
    wait for it."""
    entry = catalog()[name]
    target = cache_root() / f"{name}-v{FORMAT}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say = ANNOUNCE.get()
    with _made_alone(target.parent / f".{name}-v{FORMAT}.lock", name, say):
        if target.is_dir():  # made by the process we waited for
            return target
        started = time.perf_counter()
        say(f"    making {PREFIX}{name} (first use, kept in the cache) ...")
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        from runner.backends.quiet import captured

        try:
            base = resolve(entry.base) if entry.base else None
            with captured():  # what the libraries say while we make our own model is not news
                entry.make(work, base)
            try:
                work.rename(target)
            except OSError:  # another process made it first (one that takes no lock)
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"    made {PREFIX}{name} in {time.perf_counter() - started:.1f}s")
    return target


@contextlib.contextmanager
def _made_alone(lock: Path, name: str, say: Callable[[str], None]) -> Iterator[None]:
    """Hold LOCK (an advisory file lock, released when the process dies) while NAME is made;
    where the system has no such locks, makers race and the first rename wins."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"    waiting for another process making {PREFIX}{name} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
