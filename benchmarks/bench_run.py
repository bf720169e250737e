"""`runner run` against a hand-written script doing the same steps, as whole processes.

For each quickstart spec, the two commands alternate for several rounds; the ratio of
the medians is printed. Goal (issues 3 and 4): at most 1.03. Not a test: read the ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = int(os.environ.get("ROUNDS", "5"))
CASES = {
    "text": ("specs/quickstart-text.yaml", "handwritten_text.py"),
    "image": ("specs/quickstart-image.yaml", "handwritten_image.py"),
}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = tempfile.mkdtemp(prefix="runner-bench-")
    for name in sys.argv[1:] or list(CASES):
        spec, script = CASES[name]
        runner = [sys.executable, "-m", "runner", "run", spec, "--out", out]
        by_hand = [sys.executable, str(HERE / script)]
        timed(runner), timed(by_hand)  # builds the builtins, warms caches
        pairs = [(timed(runner), timed(by_hand)) for _ in range(ROUNDS)]
        r = statistics.median(p[0] for p in pairs)
        h = statistics.median(p[1] for p in pairs)
        print(f"{name}: runner {r:.3f} s  by hand {h:.3f} s  ratio {r / h:.3f}  ({ROUNDS} pairs)")


if __name__ == "__main__":
    main()
