"""What a run ran on: libraries, hardware, the settings that can change results, the commit.

torch is imported inside the functions that need it, so importing this stays cheap.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from runner.meta import DISTRIBUTION

LIBRARIES = (
    "torch",
    "transformers",
    "diffusers",
    "peft",
    "safetensors",
    "huggingface_hub",
    "accelerate",
    "numpy",
    "pillow",
    "tokenizers",
    DISTRIBUTION,
)
# Environment variables that can change results (NVIDIA_TF32_OVERRIDE: matmul precision).
ENV_VARS = (
    "CUBLAS_WORKSPACE_CONFIG",
    "HF_HUB_OFFLINE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
)


def library_version(name: str) -> str | None:
    """The installed version of a distribution, or None when absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == DISTRIBUTION:  # run from a source tree that is not installed
            from runner.meta import __version__

            return __version__
        return None


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def nvidia_driver(index: int) -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None when it is not there."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"-i={index}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def gpu(device: str) -> dict[str, Any] | None:
    """Name, driver and CUDA version of the CUDA device a run uses; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = int(device.partition(":")[2] or 0)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "name": torch.cuda.get_device_name(index),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
        "driver": nvidia_driver(index),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
    }


def capture(device: str) -> dict[str, Any]:
    """Python, platform, CPU, GPU, library versions and result-changing env vars."""
    try:
        import torch

        threads: int | None = torch.get_num_threads()
    except ImportError:
        threads = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "gpu": gpu(device),
        "libraries": {name: library_version(name) for name in LIBRARIES},
        "env": {name: os.environ.get(name) for name in ENV_VARS},
    }


def git_commit() -> str | None:
    """The commit of the runner checkout this code runs from, or None when installed."""
    here = Path(__file__).resolve().parent
    for root in here.parents:
        if root.name in ("site-packages", "dist-packages"):
            return None  # an installed copy; a repository above it is not ours
        if (root / ".git").exists():
            break
    else:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and len(out.stdout.strip()) == 40:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return read_head(root / ".git")


def read_head(git: Path) -> str | None:
    """Resolve HEAD from the files of a .git folder, without git."""
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        for line in (git / "packed-refs").read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    except OSError:
        pass
    return None
