"""`runner validate` against a bare `import yaml, jsonschema`, as whole processes.

Alternates the two commands, several rounds, and prints the ratio of medians.
Goal (issue 2): at most 2.0. Not a test: machines are noisy; read the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 15


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    spec = str(ROOT / "specs" / "sdxl-styles.yaml")
    validate = [sys.executable, "-m", "runner", "validate", spec]
    bare = [sys.executable, "-c", "import yaml, jsonschema"]
    timed(validate), timed(bare)  # warm the file cache
    pairs = [(timed(validate), timed(bare)) for _ in range(ROUNDS)]
    v = statistics.median(p[0] for p in pairs)
    b = statistics.median(p[1] for p in pairs)
    print(f"runner validate: {v * 1000:.1f} ms  bare import: {b * 1000:.1f} ms  ratio: {v / b:.2f}")


if __name__ == "__main__":
    main()
