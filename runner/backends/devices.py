"""Device and dtype resolution shared by the backends (imports torch)."""

from __future__ import annotations

import torch

from runner.errors import RunnerError


def resolve_device(device: str) -> str:
    """auto: cuda, else mps, else cpu; a bare `cuda` becomes `cuda:0`."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunnerError(
            f"device {device!r} was asked for, but torch {torch.__version__} sees no CUDA device"
        )
    if (
        device.startswith("cuda")
        and int(device.partition(":")[2] or 0) >= torch.cuda.device_count()
    ):
        raise RunnerError(
            f"device {device!r} was asked for, "
            f"but torch sees {torch.cuda.device_count()} CUDA devices"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise RunnerError("device 'mps' was asked for, but torch sees no MPS device")
    if device == "cuda":
        return "cuda:0"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """auto: float16 on cuda and mps, float32 on cpu."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "float16"


def seed(device: str, value: int) -> None:
    """`torch.manual_seed(VALUE)` for a run on DEVICE.

    On a CPU the CPU generator is the only one a run draws from, so it alone is seeded:
    `torch.manual_seed` would also queue a seed for CUDA, XPU and MTIA, each with a
    traceback of the caller's stack, which in the runner's deep stack costs more than a
    one-token generate step of a small model.
    """
    if device == "cpu":
        torch.default_generator.manual_seed(value)
    else:
        torch.manual_seed(value)


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def gpu_memory(device: str) -> int:
    """The total memory of a CUDA DEVICE in bytes: what batch sizes are drawn from."""
    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
