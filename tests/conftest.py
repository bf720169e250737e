"""Session-wide test settings: never reach the hub; builtins go to a private cache."""

from __future__ import annotations

import os
import tempfile

# Set before any test module imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RUNNER_TEST_CACHE", tempfile.mkdtemp(prefix="runner-test-cache-"))
os.environ["XDG_CACHE_HOME"] = os.environ["RUNNER_TEST_CACHE"]
