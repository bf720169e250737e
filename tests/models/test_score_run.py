"""The shipped score quickstart run end to end: cells, row summaries, multiple choice,
`runner scores`, `run.scores` and the report's section all give the same numbers."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from commands import invoke

import runner

ROOT = Path(__file__).resolve().parents[2]


def test_the_score_quickstart(tmp_path: Path) -> None:
    run = runner.run(ROOT / "specs" / "quickstart-score.yaml", out=tmp_path)
    records = [json.loads(x) for x in (ROOT / "specs/data/score-qa.jsonl").read_text().splitlines()]
    cells = {
        name: [
            json.loads(x)
            for x in (run.dir / f"outputs/{name}/scores.jsonl").read_text().splitlines()
        ]
        for name in ("02-loglik", "03-choices")
    }
    # ordered by row, then record
    rows = ["base", "a", "b", "a=0.5, b=0.5"]
    assert [(c["row"], c["record"]) for c in cells["02-loglik"]] == [
        (r, i) for r in rows for i in range(len(records))
    ]
    # multiple choice: acc and acc_norm from each choice's loglik, lm-eval's definitions
    for cell in cells["03-choices"]:
        record = records[cell["record"]]
        logliks = [c["loglik"] for c in cell["choices"]]
        normed = [x / len(o) for x, o in zip(logliks, record["options"], strict=True)]
        assert cell["acc"] == float(logliks.index(max(logliks)) == record["label"])
        assert cell["acc_norm"] == float(normed.index(max(normed)) == record["label"])
        assert cell["loglik"] == logliks[record["label"]]
    # a right choice scores as the same continuation does in the other step
    answers = {c["record"]: c["loglik"] for c in cells["02-loglik"] if c["row"] == "a"}
    for cell in (c for c in cells["03-choices"] if c["row"] == "a"):
        if records[cell["record"]]["options"][cell["label"]] == records[cell["record"]]["answer"]:
            assert abs(cell["loglik"] - answers[cell["record"]]) < 1e-4

    summary = run.scores("loglik")
    assert [s.row for s in summary] == rows
    for s in summary:
        mine = [c for c in cells["02-loglik"] if c["row"] == s.row]
        total, tokens = sum(c["loglik"] for c in mine), sum(c["tokens"] for c in mine)
        assert math.isclose(s.perplexity or 0, math.exp(-total / tokens), rel_tol=1e-9)
        assert s.acc is None
    choices = run.scores("choices")
    assert [s.acc for s in choices] == [
        sum(c["acc"] for c in cells["03-choices"] if c["row"] == r) / len(records)
        for r in ("base", "a", "b")
    ]

    code, out, _ = invoke("scores", str(run.dir), "--json")
    assert code == 0
    board = json.loads(out)
    assert [(e["step"], e["row"]) for e in board] == [("loglik", r) for r in rows] + [
        ("choices", r) for r in ("base", "a", "b")
    ]
    assert board[0]["loglik"] == summary[0].loglik
    code, out, _ = invoke("scores", str(run.dir), "--csv")
    assert list(csv.DictReader(io.StringIO(out)))[1]["row"] == "a"
    code, out, _ = invoke("scores", str(run.dir))
    best = min(summary, key=lambda s: s.perplexity or math.inf)
    line = next(x for x in out.splitlines() if f"| loglik | {best.row} |" in x)
    assert f"**{best.perplexity:.4g}**" in line

    page = (run.dir / "report.html").read_text()
    section = page.split("id='step-2'")[1].split("</section>")[0]
    assert section.count("<svg") == 2 and "<script" not in page
    assert section.count("&#9733;</strong>") == 2  # the best loglik and the best perplexity
    assert section.count("<details>") == len(rows)
