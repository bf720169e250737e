"""What a run records of its environment, read from torch itself."""

from __future__ import annotations

import os
import sys

from runner.backends import determinism
from runner.record import environment


def test_capture_records_library_versions() -> None:
    import numpy
    import torch

    env = environment.capture("cpu")
    # each against what the module itself says, not against the function capture() calls
    assert env["libraries"]["torch"] == torch.__version__
    assert env["libraries"]["numpy"] == numpy.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3])) and env["gpu"] is None
    assert env["torch_threads"] >= 1
    assert set(env["env"]) >= {"CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS"}


def test_apply_determinism_fixes_threads() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        applied = determinism.apply_determinism("cpu", 1)
        assert applied["threads"] == 1 == torch.get_num_threads()
        assert applied["use_deterministic_algorithms"] is True
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == applied["CUBLAS_WORKSPACE_CONFIG"]
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(False)
