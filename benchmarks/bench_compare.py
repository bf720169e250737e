"""A compare step against the same cells written as set_adapters (or disable) + generate
steps, in one run, so both share the loaded model: the seconds each took, from the manifest.
The steps come once before the compare and once after (warm-up and drift fall on both
sides); the compare is set against their mean.

This is the baseline for a faster compare executor (mixed-adapter batches): today a compare
makes one generate call per cell, so the ratio should be about 1. Not a test: read it.
`python benchmarks/bench_compare.py [text|image] [--device cuda]`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROWS = [None, "a", "{a: 0.5, b: 0.5}", "{b: 0.5}", "b"]  # None: base
LABELS = ["base", "a", "{a: 0.5, b: 0.5}", "{b: 0.5}", "b"]
PROMPTS = ["a red cube on a table", "a cabin in the snow", "the cat", "once upon a time"]
SEEDS = [0, 1]
MODELS = {
    "text": ("transformers", "tiny-causal-lm", "{max_new_tokens: 16}"),
    "image": ("diffusers", "tiny-sd", "{num_inference_steps: 4}"),
}


def spec(kind: str, device: str) -> str:
    family, model, defaults = MODELS[kind]
    return (
        f"version: 1\nname: bench-compare-{kind}\ndevice: {device}\n"
        f"model: {{family: {family}, path: builtin:{model}}}\n"
        f"adapters:\n  a: {{path: builtin:{model}-lora-a}}\n  b: {{path: builtin:{model}-lora-b}}\n"
        f"defaults:\n  generate: {defaults}\n"
        "steps:\n  - {op: load, adapters: [a, b]}\n"
        + as_steps()
        + f"  - op: compare\n    adapters: [{', '.join(['base', *LABELS[1:]])}]\n"
        f"    prompt: {json.dumps(PROMPTS)}\n    seed: {json.dumps(SEEDS)}\n" + as_steps()
    )


def as_steps() -> str:
    text = ""
    for row in ROWS:
        if row is None:
            text += "  - op: disable\n"
        else:
            text += f"  - op: set_adapters\n    adapters: {row}\n  - op: enable\n"
        for prompt in PROMPTS:
            for seed in SEEDS:
                text += f"  - {{op: generate, prompt: {json.dumps(prompt)}, seed: {seed}}}\n"
    return text


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import runner

    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    kinds = [a for a in args if a in MODELS] or list(MODELS)
    out = Path(tempfile.mkdtemp(prefix="runner-bench-compare-"))
    for kind in kinds:
        file = out / f"{kind}.yaml"
        file.write_text(spec(kind, device))
        run = runner.run(file, out=out / "runs")
        steps = run.manifest.steps
        compared = sum(s.seconds for s in steps if s.op == "compare")
        ops = ("generate", "set_adapters", "enable", "disable")
        alone = sum(s.seconds for s in steps if s.op in ops) / 2
        cells = len(run.cells(next(s.index for s in steps if s.op == "compare")))
        print(
            f"{kind}: compare of {cells} cells {compared:.2f} s, the same as steps "
            f"{alone:.2f} s (mean of before and after), ratio {compared / alone:.2f}"
        )


if __name__ == "__main__":
    main()
