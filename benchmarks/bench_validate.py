"""`runner validate` against a bare `import yaml, jsonschema`, as whole processes.

Alternates the commands, several rounds, and prints the ratios of medians: a first
validation (an empty cache, so the schema is checked) and a repeated one (the document
is remembered as schema-valid). Goal (issue 2): at most 2.0. Not a test: read the ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 15


def timed(cmd: list[str], cache: str | None = None) -> float:
    env = {**os.environ, "XDG_CACHE_HOME": cache or tempfile.mkdtemp()}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    spec = str(ROOT / "specs" / "sdxl-styles.yaml")
    validate = [sys.executable, "-m", "runner", "validate", spec]
    bare = [sys.executable, "-c", "import yaml, jsonschema"]
    warm = tempfile.mkdtemp()
    timed(validate, warm), timed(bare)  # warm the file cache and the validity cache
    rounds = [(timed(validate), timed(validate, warm), timed(bare)) for _ in range(ROUNDS)]
    first, again, b = (statistics.median(r[i] for r in rounds) for i in range(3))
    print(
        f"bare import: {b * 1000:.1f} ms  runner validate: first {first * 1000:.1f} ms"
        f" (ratio {first / b:.2f}), again {again * 1000:.1f} ms (ratio {again / b:.2f})"
    )


if __name__ == "__main__":
    main()
