"""The settings that make a run repeatable, applied to torch before a model loads.

torch is imported inside the function, so importing this stays cheap.
"""

from __future__ import annotations

import os
from typing import Any

CUBLAS_DETERMINISTIC = ":4096:8"


def apply_determinism(
    device: str, threads: int | None, deterministic: bool = True
) -> dict[str, Any]:
    """Fix the thread count and torch's algorithm choices; returns what was applied.

    Call before CUDA initialises: cuBLAS reads CUBLAS_WORKSPACE_CONFIG only then.
    Both branches set torch's global flags, so one run in a process never leaks into the next.
    """
    import torch

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.use_deterministic_algorithms(deterministic, warn_only=deterministic)
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.backends.cudnn.benchmark = False
    if threads is not None:
        torch.set_num_threads(threads)
    return {
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }
