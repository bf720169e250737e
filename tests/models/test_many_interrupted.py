"""An interrupted batch: the spec that was running keeps its elapsed time (not 0.00 s),
and the batch says how to finish it: `--resume` for the stopped run, one `runner run` for
the specs that never started; that command, run, finishes them."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from commands import invoke

import runner
from runner.running.many import left_over, table

TEXT = """\
version: 1
name: {name}
device: cpu
model: {{family: transformers, path: builtin:tiny-causal-lm}}
steps:
  - {{op: generate, id: one, prompt: a, max_new_tokens: 2}}
  - {{op: generate, id: two, prompt: b, max_new_tokens: 2}}
"""


def test_an_interrupted_batch_keeps_its_time_and_names_what_is_left(tmp_path: Path) -> None:
    specs = []
    for name in ("one", "two", "three", "four"):
        (tmp_path / f"{name}.yaml").write_text(TEXT.format(name=name))
        specs.append(tmp_path / f"{name}.yaml")

    def progress(line: str) -> None:
        if line.startswith("[two] step 1/"):
            time.sleep(0.3)  # the interrupt lands a while into the spec
            raise runner.Interrupted("SIGINT")

    out = tmp_path / "runs"
    many = runner.run_many(specs, out=out, progress=progress)
    assert [o.status for o in many.outcomes] == ["succeeded", "interrupted", "not run", "not run"]
    stopped = many.outcomes[1]
    assert stopped.seconds >= 0.3, stopped
    (row,) = [line for line in table(many).splitlines() if line.startswith(str(specs[1]))]
    assert float(row.split()[2]) >= 0.3
    rest = left_over(many, out)
    assert rest == [
        f"runner run --resume {shlex.quote(str(stopped.run_dir))}",
        f"runner run {specs[2]} {specs[3]} --out {out}",
    ]
    # The printed command, run as written, runs the specs that never started.
    code, printed, err = invoke(*shlex.split(rest[1])[1:])
    assert code == 0, err
    assert sorted(p.name.split("-")[0] for p in out.iterdir()) == ["four", "one", "three", "two"]
