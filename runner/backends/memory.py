"""How much memory the process holds now: RSS on the CPU, torch's allocation on CUDA."""

from __future__ import annotations

import gc
import os
import resource
import sys


def rss_bytes() -> int:
    """The resident set size now (Linux /proc/self/statm), else the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def used(device: str) -> dict[str, int]:
    """The process's memory after a collection: rss_bytes, and cuda_allocated_bytes on CUDA."""
    import torch

    gc.collect()
    out = {"rss_bytes": rss_bytes()}
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        out["cuda_allocated_bytes"] = int(torch.cuda.memory_allocated(device))
    return out
