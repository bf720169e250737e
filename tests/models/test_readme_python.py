"""The README's Python examples run as written: every ```python block, each in a fresh
namespace, in a folder holding the specs they name (builtin models, no hub). A block whose
first line is `# needs: gpu` or `# needs: hub` is skipped, and says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
NEEDS = re.compile(r"# needs: (gpu|hub)\b")

# What the examples name: spec.yaml with a step `blend` and a score step `loglik`, a.yaml
# and b.yaml.
SPEC = """\
version: 1
name: {name}
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
adapters:
  a: {{path: builtin:tiny-causal-lm-lora-a}}
  b: {{path: builtin:tiny-causal-lm-lora-b}}
steps:
  - op: load
    adapters: [a, b]
  - op: set_adapters
    adapters: {{a: 0.5, b: 0.5}}
  - op: generate
    id: blend
    prompt: [the cat, a bird]
    max_new_tokens: 4
  - op: score
    id: loglik
    adapters: [base, a]
    context: [the cat]
    continuation: [" sat on the mat"]
"""


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2
    assert any("run_many" in block for block in BLOCKS)


@pytest.mark.parametrize("number", range(len(BLOCKS)), ids=lambda n: f"block{n + 1}")
def test_a_readme_python_block_runs_as_written(
    number: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = BLOCKS[number]
    needs = NEEDS.match(block.lstrip())
    if needs:
        pytest.skip(f"README python block {number + 1} needs a {needs.group(1)}")
    for name in ("spec", "a", "b"):
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(name=name))
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"README.md python block {number + 1}", "exec"), {})  # noqa: S102
