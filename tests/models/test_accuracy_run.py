"""A compare whose text expectations come from a data file scores each row's `accuracy`
(CONTRACT section 10): counted here by hand from the cells, the same in the manifest,
`run.scores`, `runner scores` and the report's table."""

from __future__ import annotations

import json
from pathlib import Path

from commands import invoke

import runner

PROMPTS = ["the cat", "a little bird", "once upon", "the old"]
SPEC = """\
version: 1
name: accuracy
seed: 3
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
adapters:
  a: {path: builtin:tiny-causal-lm-lora-a}
data:
  qa: {path: qa.jsonl}
defaults:
  generate: {max_new_tokens: 6}
steps:
  - {op: load, adapters: [a]}
  - op: compare
    id: qa
    adapters: [base, a]
    prompt: {data: qa, field: question}
"""


def _cells(run: runner.Run) -> list[dict]:
    text = (run.dir / "outputs/02-qa/cells.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_data_expectations_score_each_row(tmp_path: Path) -> None:
    (tmp_path / "qa.jsonl").write_text(
        "".join(json.dumps({"question": p, "answer": "", "word": ""}) + "\n" for p in PROMPTS)
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    probe = {(c["row"], c["prompt"]): c["text"] for c in _cells(runner.run(spec, out=tmp_path))}
    # answers: base's completion for the first two prompts, row a's for the last two; the
    # word each completion must also contain: the first word of that answer, except for the
    # second prompt, where base's last word reversed
    answers = [probe["base", p] for p in PROMPTS[:2]] + [probe["a", p] for p in PROMPTS[2:]]
    words = [x.split()[0] for x in answers]
    words[1] = probe["base", PROMPTS[1]].split()[-1][::-1] + "zz"
    (tmp_path / "qa.jsonl").write_text(
        "".join(
            json.dumps({"question": p, "answer": x, "word": w}) + "\n"
            for p, x, w in zip(PROMPTS, answers, words, strict=True)
        )
    )
    spec.write_text(
        SPEC + "    expect:\n      equals: {data: qa, field: answer}\n"
        "      contains: {data: qa, field: word}\n"
    )
    run = runner.run(spec, out=tmp_path / "runs")
    cells = _cells(run)
    assert {(c["row"], c["prompt"]): c["text"] for c in cells} == probe
    expected = {
        row: sum(
            probe[row, p] == x and w in probe[row, p]
            for p, x, w in zip(PROMPTS, answers, words, strict=True)
        )
        / len(PROMPTS)
        for row in ("base", "a")
    }
    assert expected["base"] == 0.25  # the first prompt: base's completion and its word
    assert expected["a"] == 0.5  # the last two: row a's completions and their words

    scores = run.scores("qa")
    assert [(s.row, s.records, s.accuracy) for s in scores] == [
        ("base", 4, expected["base"]),
        ("a", 4, expected["a"]),
    ]
    assert scores[0].loglik is None and scores[0].clip_score is None
    manifest = json.loads((run.dir / "manifest.json").read_text())
    step = manifest["steps"][1]
    assert [r["accuracy"] for r in step["scores"]] == [expected["base"], expected["a"]]
    checked = {r["name"]: r["expected"] for r in step["expectations"]}
    assert checked == {
        "equals": {"data": "qa", "field": "answer"},
        "contains": {"data": "qa", "field": "word"},
    }

    code, out, _ = invoke("scores", str(run.dir), "--json")
    assert code == 0
    assert [(e["step"], e["row"], e["accuracy"]) for e in json.loads(out)] == [
        ("qa", "base", expected["base"]),
        ("qa", "a", expected["a"]),
    ]
    code, out, _ = invoke("scores", str(run.dir))
    assert out.splitlines()[0] == "| run | step | row | records | accuracy |"
    assert f"| qa | a | 4 | **{expected['a']:.4g}** |" in out

    page = (run.dir / "report.html").read_text()
    section = page.split("id='step-2'")[1].split("</section>")[0]
    assert "<table class=scores><tr><th>row</th><th>records</th><th>accuracy</th>" in section
    assert section.count("&#9733;</strong>") == 1 and section.count("<svg") == 1
