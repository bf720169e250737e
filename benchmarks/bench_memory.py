"""Peak memory of a pipeline run with 10 LoRAs loaded against the base alone (issue 4).

Each case is a whole `runner run` process on builtin:tiny-sdxl; its peak resident set
size (ru_maxrss) is printed with the difference. Not a test: read the numbers.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

LORAS = 10
CHILD = """
import resource, sys
from runner.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def spec(loras: int) -> str:
    adapters = "".join(f"  l{i}: {{path: builtin:tiny-sdxl-lora-a}}\n" for i in range(loras))
    load = f"  - op: load\n    adapters: [{', '.join(f'l{i}' for i in range(loras))}]\n"
    return (
        "version: 1\ndevice: cpu\nmodel: {family: diffusers, path: builtin:tiny-sdxl}\n"
        + (f"adapters:\n{adapters}" if loras else "")
        + "steps:\n"
        + (load if loras else "")
        + "  - op: generate\n    prompt: a red cube\n    num_inference_steps: 4\n"
    )


def peak_kib(loras: int, tmp: Path) -> int:
    file = tmp / f"loras-{loras}.yaml"
    file.write_text(spec(loras))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "run", str(file), "--out", str(tmp / "runs")],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="runner-bench-memory-"))
    peak_kib(0, tmp)  # builds the builtins once
    base, many = peak_kib(0, tmp), peak_kib(LORAS, tmp)
    print(
        f"peak RSS: base alone {base / 1024:.1f} MiB, with {LORAS} LoRAs {many / 1024:.1f} MiB,"
        f" difference {(many - base) / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
