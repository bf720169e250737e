"""`expect:` on generate and compare steps through the command line (CONTRACT section 9):
passing expectations exit 0, a failing one still finishes the run succeeded, records where it
failed and exits 4; the many-spec table says so too."""

from __future__ import annotations

import json
import re
from pathlib import Path

from commands import invoke

HEAD = """\
version: 1
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
  zero: {config: {type: lora, r: 4, target_modules: [q_proj, v_proj]}}
defaults:
  generate: {max_new_tokens: 8}
steps:
  - op: load
    adapters: [a, zero]
"""

# What the builtin LM writes after these prompts: read from a first run, not from the code.
PROMPTS = ["the cat", "a little bird"]


def _write(tmp: Path, name: str, steps: str) -> Path:
    file = tmp / f"{name}.yaml"
    file.write_text(HEAD.replace("version: 1\n", f"version: 1\nname: {name}\n") + steps)
    return file


def _manifest(stdout: str) -> dict:
    return json.loads((Path(stdout.strip().splitlines()[-1]) / "manifest.json").read_text())


def test_passing_and_failing_expectations_and_exit_4(tmp_path: Path) -> None:
    probe = _write(
        tmp_path, "probe", f"  - op: compare\n    adapters: [base, a]\n    prompt: {PROMPTS}\n"
    )
    code, out, _ = invoke("run", str(probe), "--out", str(tmp_path / "runs"))
    assert code == 0
    cells = [
        json.loads(line)
        for line in next((Path(out.strip()) / "outputs").glob("*compare/cells.jsonl"))
        .read_text()
        .splitlines()
    ]
    base = {c["prompt"]: c["text"] for c in cells if c["row"] == "base"}
    row_a = {c["prompt"]: c["text"] for c in cells if c["row"] == "a"}
    word = base[PROMPTS[0]].split()[0]
    assert word not in row_a[PROMPTS[0]]  # the adapter changes the first word

    passing = _write(
        tmp_path,
        "passing",
        f"  - op: disable\n  - op: generate\n    prompt: {PROMPTS}\n"
        f"    expect: {{contains: {json.dumps([base[p][:5] for p in PROMPTS])}, "
        f"equals: {json.dumps([base[p] for p in PROMPTS])}, not_contains: zzzz}}\n"
        "  - op: compare\n    adapters: [base, a]\n"
        f"    prompt: {PROMPTS}\n    expect: {{differs_from_base: true, min_distance: 0.01}}\n",
    )
    code, out, err = invoke("run", str(passing), "--out", str(tmp_path / "runs"))
    assert code == 0, err
    steps = _manifest(out)["steps"]
    assert [r["name"] for r in steps[2]["expectations"]] == ["contains", "not_contains", "equals"]
    assert all(r["passed"] for s in steps[2:] for r in s["expectations"])
    assert [r["name"] for r in steps[3]["expectations"]] == ["differs_from_base", "min_distance"]

    starts = [r"^\s*" + re.escape(base[p].split()[0]) + r"\b" for p in PROMPTS]
    failing = _write(
        tmp_path,
        "failing",
        "  - op: compare\n    adapters: [base, a, zero]\n"
        f"    prompt: {PROMPTS}\n    seed: [0, 1]\n"
        f"    expect: {{differs_from_base: true, regex: {json.dumps(starts)}}}\n",
    )
    code, out, err = invoke("run", str(failing), "--out", str(tmp_path / "runs"))
    assert code == 4
    manifest = _manifest(out)
    assert manifest["status"] == "succeeded"
    differs, regex = manifest["steps"][1]["expectations"]
    assert differs["name"] == "differs_from_base" and not differs["passed"]
    assert [f["row"] for f in differs["failing"]] == ["zero"] and differs["failing_count"] == 1
    # each prompt's base first word: the zero row writes what base writes, row a does not
    assert not regex["passed"]
    failed_rows = {(f["row"], f["prompt"]) for f in regex["failing"]}
    assert ("a", PROMPTS[0]) in failed_rows and not any(r == "zero" for r, _ in failed_rows)
    assert regex["failing_count"] == len(regex["failing"]) >= 2  # both seeds of row a
    assert "expectation failed: differs_from_base in 1 row" in err
    assert "expectations failed: step 2: differs_from_base, step 2: regex" in err

    code, out, err = invoke("run", str(passing), str(failing), "--out", str(tmp_path / "many"))
    assert code == 4, err
    assert "expectations failed: step 2: differs_from_base, step 2: regex" in out


def test_the_report_shows_failed_expectations(tmp_path: Path) -> None:
    spec = _write(
        tmp_path,
        "report",
        "  - op: compare\n    adapters: [base, zero]\n    prompt: the cat\n"
        "    expect: {differs_from_base: true, not_contains: zzzz}\n",
    )
    code, out, _ = invoke("run", str(spec), "--out", str(tmp_path / "runs"))
    assert code == 4
    page = (Path(out.strip()) / "report.html").read_text()
    assert "<span class=noop>failed</span> <code>differs_from_base: true</code> in 1" in page
    assert "<li>row zero: changed nothing: every cell equals its base cell</li>" in page
    assert "<span class=pass>passed</span> <code>not_contains: &quot;zzzz&quot;</code>" in page
