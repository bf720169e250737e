"""Six small specs on one builtin base: six `runner run` processes, one `runner run` of all
six (the model loaded once and reused), and one `runner run --ray --workers 2`.

Prints the median seconds of each over ROUNDS rounds (default 3), the ratios, and how many
times each way loaded the model (read from the manifests). Not a test: read the ratios.
The single command should be clearly cheaper than six processes.
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
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SPEC = """\
version: 1
name: bench-{i}
device: cpu
seed: {i}
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
  b: {{path: builtin:tiny-causal-lm-lora-b}}
defaults:
  generate: {{max_new_tokens: 16}}
steps:
  - {{op: generate, id: base, prompt: [the cat, once upon a time]}}
  - {{op: load, adapters: [a, b]}}
  - {{op: set_adapters, adapters: {{a: {w}, b: 0.5}}}}
  - {{op: generate, id: mix, prompt: [the cat, once upon a time]}}
"""


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", *args],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def loads(out: Path) -> int:
    """Runs under OUT that loaded their model rather than reusing one."""
    manifests = [json.loads(p.read_text()) for p in out.glob("*/manifest.json")]
    return sum(1 for m in manifests if not m.get("origin", {}).get("model_reused_from"))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="runner-bench-many-"))
    specs = []
    for i in range(6):
        specs.append(work / f"bench-{i}.yaml")
        specs[-1].write_text(SPEC.format(i=i, w=0.25 * (i + 1)))
    names = [str(s) for s in specs]
    ways = {
        "6 processes": lambda out: sum(timed(["run", s, "--out", str(out)]) for s in names),
        "1 command": lambda out: timed(["run", *names, "--out", str(out)]),
        "--ray --workers 2": lambda out: timed(
            ["run", *names, "--ray", "--workers", "2", "--out", str(out)]
        ),
    }
    timed(["run", names[0], "--out", str(work / "warm")])  # builds the builtins, warms caches
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    loaded: dict[str, int] = {}
    for r in range(ROUNDS):
        for way, run in ways.items():
            out = work / f"{way.replace(' ', '_')}-{r}"
            seconds[way].append(run(out))
            loaded[way] = loads(out)
    med = {way: statistics.median(s) for way, s in seconds.items()}
    for way in ways:
        print(f"{way:>18}: {med[way]:7.2f} s  model loaded {loaded[way]} time(s)")
    one, six, ray = med["1 command"], med["6 processes"], med["--ray --workers 2"]
    print(f"6 processes / 1 command: {six / one:.2f}")
    print(f"6 processes / --ray --workers 2: {six / ray:.2f}")
    print(
        f"--ray --workers 2 / 1 command: {ray / one:.2f}  ({ROUNDS} rounds, {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
