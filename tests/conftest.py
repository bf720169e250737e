"""Session-wide test settings: never reach the hub; builtins go to a private cache; the
hypothesis profile (HYPOTHESIS_PROFILE=long for a long fuzz run, default fast)."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

from hypothesis import settings

# Set before any test module imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RUNNER_TEST_CACHE", tempfile.mkdtemp(prefix="runner-test-cache-"))
os.environ["XDG_CACHE_HOME"] = os.environ["RUNNER_TEST_CACHE"]

# `fast` keeps the fuzz tier to seconds in `make test`; `long` is for a night on a spare machine.
settings.register_profile("fast", max_examples=150, deadline=timedelta(seconds=10))
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
