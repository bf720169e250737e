"""4 adapter rows x 200 records in one `score` step (one process, the base loaded once,
rows in shared mixed batches) against 4 separate single-adapter passes, one process each
(the lm-eval way: `HFLM(pretrained=..., peft=...)` scores one adapter per run).

Prints the seconds of each way over ROUNDS rounds (median, default 1) and the ratio; the
goal is <= 0.35. Not a test: read the ratio. RECORDS (default 200) sets the data size.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("ROUNDS", "1"))
RECORDS = int(os.environ.get("RECORDS", "200"))
ROWS = ["a", "b", "{a: 0.5}", "{b: 0.5}"]
WORDS = "the cat dog bird sat ran sang on a mat hill tree once upon time little big".split()
SPEC = """\
version: 1
name: bench-score-{n}
device: cpu
dtype: float32
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
  b: {{path: builtin:tiny-causal-lm-lora-b}}
data:
  qa: {{path: qa.jsonl}}
steps:
  - {{op: load, adapters: [a, b]}}
  - op: score
    id: s
    adapters: [{rows}]
    context: {{data: qa, field: c}}
    continuation: {{data: qa, field: x}}
"""


def _records(folder: Path) -> None:
    lines = []
    for i in range(RECORDS):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(8 + i % 17)]
        lines.append(json.dumps({"c": " ".join(words[:-3]), "x": " " + " ".join(words[-3:])}))
    (folder / "qa.jsonl").write_text("\n".join(lines) + "\n")


def _run(spec: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", "run", str(spec), "--out", str(out)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - start


def main() -> None:
    together, apart = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _records(folder)
        one = folder / "together.yaml"
        one.write_text(SPEC.format(n="all", rows=", ".join(ROWS)))
        singles = []
        for n, row in enumerate(ROWS):
            spec = folder / f"alone-{n}.yaml"
            spec.write_text(SPEC.format(n=n, rows=row))
            singles.append(spec)
        _run(one, folder / "warm")  # builds the builtins into the cache, warms the disk
        for _ in range(ROUNDS):
            together.append(_run(one, folder / "runs"))
            apart.append(sum(_run(s, folder / "runs") for s in singles))
    a, b = statistics.median(together), statistics.median(apart)
    print(f"{len(ROWS)} rows x {RECORDS} records, median of {ROUNDS} round(s)")
    print(f"one score step, one process:        {a:7.2f} s")
    print(f"{len(ROWS)} single-adapter passes, 4 processes: {b:7.2f} s")
    print(f"ratio: {a / b:.3f} (goal <= 0.35)")


if __name__ == "__main__":
    main()
