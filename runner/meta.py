"""What the package is: its version, its name on the package index, where it keeps caches.

Imports nothing of the runner, so that every module may import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"
# The name on the package index; `runner` there is an unrelated project. Imports and the
# command stay `runner`.
DISTRIBUTION = "peft-runner"


def cache_home() -> Path:
    """Where the runner keeps its caches: $XDG_CACHE_HOME/runner, default ~/.cache/runner."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runner"
