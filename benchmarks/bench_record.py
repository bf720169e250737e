"""Recording cost against the work: a spec of N one-token generate steps, as whole processes.

`runner run` of N steps against the same loop written by hand (tokenize, seed, generate one
token, write each completion to its own file), alternated, median of ROUNDS runs each, for
N = 100, 400, 1600 (or the Ns given as arguments). Prints each ratio and the runner's
overhead per step; recording is linear when that overhead stays flat as N grows.
Goal (issue 15): ratio <= 1.05 at every N. Not a test: read the numbers.

The `runner` command ends its process without the interpreter's last walks over every
object (`runner.cli.entry`), which alone saves it most of a second; "like for like" times
the hand-written loop ending the same way, so that what is left is what recording costs.
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

ROUNDS = int(os.environ.get("ROUNDS", "3"))
LIKE = "like-the-runner"  # the hand-written loop ends its process as `runner` does

BY_HAND = """
import gc, json, os, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from runner.builtin import resolve

steps, out = int(sys.argv[1]), sys.argv[2]
base = resolve("tiny-causal-lm")
torch.set_num_threads(torch.get_num_threads())
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(base, padding_side="left")
for i in range(steps):
    batch = tok([f"the cat {i}"], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    ids = model.generate(**batch, max_new_tokens=1, pad_token_id=tok.pad_token_id)
    new = ids[0, batch["input_ids"].shape[1]:].tolist()
    folder = os.path.join(out, f"{i:04d}")
    os.makedirs(folder)
    with open(os.path.join(folder, "completions.jsonl"), "w") as f:
        f.write(json.dumps({"text": tok.decode(new, skip_special_tokens=True), "ids": new}) + "\\n")
if len(sys.argv) > 3:  # like the runner: no last walks over every object at exit
    gc.freeze()
"""


def spec(steps: int, folder: Path) -> Path:
    body = "".join(
        f"  - {{op: generate, prompt: 'the cat {i}', max_new_tokens: 1}}\n" for i in range(steps)
    )
    file = folder / f"record-{steps}.yaml"
    file.write_text(
        "version: 1\ndevice: cpu\nmodel: {family: transformers, path: builtin:tiny-causal-lm}\n"
        f"steps:\n{body}"
    )
    return file


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one process. CPU time
    leaves out what other tenants of a shared machine take; wall time is what a user waits."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # As on a user's machine: Python keeps the runner's compiled modules after the first run
    # (the libraries' come compiled with their wheels). Without it every run compiles the
    # runner's source again, about 0.15 s a process that no user pays twice.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(tempfile.mkdtemp(prefix="runner-bench-record-"))
    script = work / "by_hand.py"
    script.write_text(BY_HAND)
    sizes = [int(a) for a in sys.argv[1:]] or [100, 400, 1600]
    rows = []
    for steps in sizes:
        file = spec(steps, work)
        runner = [sys.executable, "-m", "runner", "run", str(file), "--out", str(work / "runs")]

        def by_hand(*how: str, steps: int = steps) -> list[str]:
            return [sys.executable, str(script), str(steps), tempfile.mkdtemp(dir=work), *how]

        timed(runner), timed(by_hand())  # warm the builtins and the file caches
        times = [(timed(runner), timed(by_hand()), timed(by_hand(LIKE))) for _ in range(ROUNDS)]
        (r, r_cpu), (h, h_cpu), (like, like_cpu) = (
            (statistics.median(t[k][0] for t in times), statistics.median(t[k][1] for t in times))
            for k in range(3)
        )
        per_step_ms = (r - h) / steps * 1000
        rows.append(
            {
                "steps": steps,
                "runner_s": r,
                "by_hand_s": h,
                "ratio": r / h,
                "like_for_like": r / like,
                "cpu_ratio": r_cpu / h_cpu,
                "cpu_like_for_like": r_cpu / like_cpu,
            }
        )
        print(
            f"N={steps:5d}: runner {r:6.2f} s  by hand {h:6.2f} s  ratio {r / h:.3f}  "
            f"overhead {per_step_ms:+.2f} ms/step  like for like {r / like:.3f}  |  "
            f"CPU ratio {r_cpu / h_cpu:.3f}, like for like {r_cpu / like_cpu:.3f}  "
            f"({ROUNDS} rounds)",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
