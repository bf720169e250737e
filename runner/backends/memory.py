"""How much memory the process holds: RSS on the CPU, torch's allocation on CUDA; now, and
at its peak over a step.

A step's RSS peak is the kernel's own high-water mark (VmHWM in /proc/self/status), reset
to the present RSS when the step starts by writing 5 to /proc/self/clear_refs (Linux 4.0
and later). Exact, and free: `getrusage`'s ru_maxrss is the process's peak since it
started, so its deltas show nothing for a step that stays below an earlier step's peak,
and sampling RSS from a thread misses what a step holds for less than the interval. Where
the mark cannot be reset (not Linux), the record says the peak is the process's so far.

Before the reset, malloc's free pages go back to the system (glibc's malloc_trim): RSS
counts pages an earlier step freed and malloc kept, and a step served from those would
show no peak of its own, only the present RSS it was reset to.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import re
import resource
import sys
from collections.abc import Callable

from runner.record import manifest as m

STATUS, CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
RESET_HIGH_WATER = "5"  # proc(5): "reset the peak resident set size to the current RSS"


def rss_bytes() -> int:
    """The resident set size now (Linux /proc/self/statm), else the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _process_peak()


def used(device: str) -> m.MemoryUse:
    """The process's memory after a collection: RSS, and torch's allocation on CUDA."""
    import torch

    gc.collect()
    if not device.startswith("cuda"):
        return m.MemoryUse(rss_bytes=rss_bytes())
    torch.cuda.synchronize(device)
    return m.MemoryUse(rss_bytes(), int(torch.cuda.memory_allocated(device)))


class Peak:
    """The most memory the process holds from its making to `read()`."""

    def __init__(self, device: str) -> None:
        self.cuda = device if device.startswith("cuda") else None
        _trim_malloc()
        self.since = "step" if _reset_high_water() else "process"
        if self.cuda is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.cuda)

    def read(self) -> m.StepMemory:
        cuda = None
        if self.cuda is not None:
            import torch

            cuda = int(torch.cuda.max_memory_allocated(self.cuda))
        rss = _high_water() if self.since == "step" else None
        return m.StepMemory(m.MemoryUse(rss or _process_peak(), cuda), peak_rss_since=self.since)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc
        return None


def _trim_malloc() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _reset_high_water() -> bool:
    try:
        with open(CLEAR_REFS, "w", encoding="ascii") as refs:
            refs.write(RESET_HIGH_WATER)
    except OSError:
        return False
    return _high_water() is not None


def _high_water() -> int | None:
    try:
        with open(STATUS, encoding="ascii") as status:
            found = re.search(r"^VmHWM:\s+(\d+) kB$", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _process_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
