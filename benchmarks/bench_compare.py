"""A compare step against the same cells written by hand, two ways: cell by cell
(set_adapters or disable, then one generate per cell) and row-batched (each row's prompts in
one generate, as a user batching by hand would), and against one generate of the prompts on
one adapter; in one run so all share the loaded model.

The blocks alternate (their order rotates each repeat, after one warm-up repeat) so drift
and noise from other processes fall on all of them; the seconds of each come from the
manifest, and the medians are compared. Goals on a CPU: compare / step-by-step <= 0.5 for
text and <= 0.6 for images, compare / row-batched <= 1, compare / one generate <= 1.5.
Not a test: read it. `python benchmarks/bench_compare.py [text|image] [--device cuda]
[--repeats N] [--threads N]` (`--threads 1` steadies the numbers on a shared CPU, where
torch's threads otherwise wait on each other).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROWS = ["base", "a", "b", "{a: 0.5, b: 0.5}"]
TEXT_PROMPTS = [
    "the cat",
    "once upon a time",
    "a red cube on a table",
    "in the beginning there was",
    "the weather today is",
    "my favourite food is a bowl of hot",
    "x",
    "she opened the door and saw",
]
KINDS = {  # family, model, generate defaults, prompts, seeds
    "text": ("transformers", "tiny-causal-lm", "{max_new_tokens: 16}", TEXT_PROMPTS, [0]),
    "image": (
        "diffusers",
        "tiny-sd",
        "{num_inference_steps: 4}",
        ["a red cube on a table", "a cabin in the snow"],
        [0, 1],
    ),
}
BLOCKS = ("compare", "steps", "rows", "one")


def spec(kind: str, device: str, repeats: int) -> tuple[str, list[str]]:
    """The spec's text, and the block (or "") each of its steps belongs to, in order."""
    family, model, defaults, prompts, seeds = KINDS[kind]
    text = (
        f"version: 1\nname: bench-compare-{kind}\ndevice: {device}\n"
        f"model: {{family: {family}, path: builtin:{model}}}\n"
        f"adapters:\n  a: {{path: builtin:{model}-lora-a}}\n  b: {{path: builtin:{model}-lora-b}}\n"
        f"defaults:\n  generate: {defaults}\n"
        "steps:\n  - {op: load, adapters: [a, b]}\n"
    )
    owners = [""]
    for repeat in range(repeats + 1):  # repeat 0 warms up
        turn = repeat % len(BLOCKS)
        for block in BLOCKS[turn:] + BLOCKS[:turn]:
            steps = globals()[f"as_{block}"](prompts, seeds)
            text += "".join(steps)
            owners += [block if repeat else ""] * len(steps)
    return text, owners


def as_compare(prompts: list[str], seeds: list[int]) -> list[str]:
    return [
        f"  - op: compare\n    adapters: [{', '.join(ROWS)}]\n"
        f"    prompt: {json.dumps(prompts)}\n    seed: {json.dumps(seeds)}\n"
    ]


def as_steps(prompts: list[str], seeds: list[int]) -> list[str]:
    steps = []
    for row in ROWS:
        if row == "base":
            steps.append("  - op: disable\n")
        else:
            steps += [f"  - op: set_adapters\n    adapters: {row}\n", "  - op: enable\n"]
        for prompt in prompts:
            for seed in seeds:
                steps.append(f"  - {{op: generate, prompt: {json.dumps(prompt)}, seed: {seed}}}\n")
    return steps


def as_rows(prompts: list[str], seeds: list[int]) -> list[str]:
    """Each row set, then one generate of all its prompts: the cells batched by hand."""
    steps = []
    for row in ROWS:
        if row == "base":
            steps.append("  - op: disable\n")
        else:
            steps += [f"  - op: set_adapters\n    adapters: {row}\n", "  - op: enable\n"]
        steps.append(one_generate(prompts, seeds))
    return steps


def as_one(prompts: list[str], seeds: list[int]) -> list[str]:
    """One generate of every prompt on one adapter: the work of one row."""
    return ["  - {op: set_adapters, adapters: a}\n", one_generate(prompts, seeds)]


def one_generate(prompts: list[str], seeds: list[int]) -> str:
    """A generate of every prompt (images: as many images per prompt as there are seeds;
    greedy text does not depend on the seed)."""
    images = f", num_images_per_prompt: {len(seeds)}" if len(seeds) > 1 else ""
    return f"  - {{op: generate, prompt: {json.dumps(prompts)}, seed: 0{images}}}\n"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import runner

    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    repeats = int(args[args.index("--repeats") + 1]) if "--repeats" in args else 5
    if "--threads" in args:
        import torch

        torch.set_num_threads(int(args[args.index("--threads") + 1]))
    kinds = [a for a in args if a in KINDS] or list(KINDS)
    out = Path(tempfile.mkdtemp(prefix="runner-bench-compare-"))
    for kind in kinds:
        text, owners = spec(kind, device, repeats)
        file = out / f"{kind}.yaml"
        file.write_text(text)
        run = runner.run(file, out=out / "runs")
        steps = run.manifest.steps
        assert len(steps) == len(owners)
        seconds: dict[str, list[float]] = {b: [] for b in BLOCKS}
        current: dict[str, float] = {}
        for step, owner, following in zip(steps, owners, [*owners[1:], ""], strict=True):
            if owner:
                current[owner] = current.get(owner, 0.0) + step.seconds
                if following != owner:  # the block ends here
                    seconds[owner].append(current.pop(owner))
        median = {b: statistics.median(s) for b, s in seconds.items()}
        compared = next(s for s in steps if s.op == "compare")
        _, _, _, prompts, seeds = KINDS[kind]
        cells = len(ROWS) * len(prompts) * len(seeds)
        print(
            f"{kind}: {cells} cells, median of {repeats}: compare {median['compare']:.3f} s, "
            f"step by step {median['steps']:.3f} s, row-batched {median['rows']:.3f} s, "
            f"one generate {median['one']:.3f} s; "
            f"compare / step-by-step {median['compare'] / median['steps']:.2f}, "
            f"compare / row-batched {median['compare'] / median['rows']:.2f}, "
            f"compare / one generate {median['compare'] / median['one']:.2f}; "
            f"executor {compared.execution['executor']}, {compared.execution['calls']} calls"
        )


if __name__ == "__main__":
    main()
