"""Many specs without a model: scheduling, option checks, orphaned runs closed by a parent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from commands import invoke

import runner
from runner.record import manifest as m
from runner.record.recorder import Recorder
from runner.running import orphan, ray_worker
from runner.running.ending import finish
from runner.running.interpreter import Overrides
from runner.running.many import Many, Outcome, grouped, table
from runner.running.plan import Plan

SPEC = """\
version: 1
device: cpu
model: {family: transformers, path: builtin:tiny-causal-lm}
steps:
  - {op: generate, id: one, prompt: a}
  - {op: generate, id: two, prompt: b}
  - {op: generate, id: three, prompt: c}
"""


def spec(tmp_path: Path, name: str = "spec") -> Path:
    file = tmp_path / f"{name}.yaml"
    file.write_text(SPEC)
    return file


def test_grouping_keeps_specs_on_one_model_together_in_first_seen_order() -> None:
    assert grouped(["x", "y", "x", "z", "y"]) == [0, 2, 1, 4, 3]


def test_a_worker_keeps_its_model_and_a_second_load_happens_only_where_it_saves_time() -> None:
    plan: Plan[str] = Plan()
    for key, job in [("sd", "s1"), ("lm", "l1"), ("sd", "s2"), ("sd", "s3"), ("xl", "x1")]:
        plan.add(key, job)
    assert plan.next(None, held=[]) == ("sd", "s1")  # the largest group first
    assert plan.next(None, held=["sd"]) == ("lm", "l1")  # then a model nobody holds
    assert plan.next("lm", held=["sd"]) == ("xl", "x1")
    assert plan.next("sd", held=["xl"]) == ("sd", "s2")  # a worker stays on its model
    assert plan.next("xl", held=["sd"]) is None  # one spec left on a held model: wait
    plan.add("sd", "retry", first=True)
    assert plan.next("xl", held=["sd"]) == ("sd", "retry")  # two left: a second load pays
    assert plan.drain() == ["s3"] and len(plan) == 0


def test_ray_without_ray_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without Ray gives
    code, out, err = invoke("run", str(spec(tmp_path)), "--ray", "--out", str(tmp_path / "r"))
    assert code == 1
    assert err == "error: --ray: Ray is not installed: pip install 'peft-runner[ray]'\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers goes with --ray"),
        (["--resume", "somewhere", "--ray"], "--resume continues one run"),
        (["--device", "gpu"], "--device"),
    ],
)
def test_options_that_do_not_go_together_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = invoke("run", str(spec(tmp_path)), *args)
    assert code == 1 and message in err


def test_ray_takes_a_spec_written_right_after_it_as_a_spec(tmp_path: Path) -> None:
    from runner.cli import _ray_value_may_be_a_spec

    a, b = spec(tmp_path, "a"), spec(tmp_path, "b")
    assert _ray_value_may_be_a_spec((b,), str(a)) == ((a, b), "local")
    assert _ray_value_may_be_a_spec((a,), "auto") == ((a,), "auto")
    assert _ray_value_may_be_a_spec((a,), "10.0.0.2:6379") == ((a,), "10.0.0.2:6379")


def test_the_table_lists_every_spec_in_order_with_what_went_wrong(tmp_path: Path) -> None:
    many = Many(
        [
            Outcome("a.yaml", "a", "succeeded", tmp_path / "a-run", 1.5),
            Outcome("long-name.yaml", "b", "failed", tmp_path / "b-run", 12.25, "b.yaml:3: boom"),
            Outcome("c.yaml", "c", "not run"),
        ]
    )
    lines = table(many).splitlines()
    assert lines[0].split() == ["spec", "status", "seconds", "run", "directory"]
    assert lines[1].split() == ["a.yaml", "succeeded", "1.50", str(tmp_path / "a-run")]
    assert lines[2].split() == ["long-name.yaml", "failed", "12.25", str(tmp_path / "b-run")]
    assert lines[3].split() == ["c.yaml", "not", "run", "-", "-"]
    assert lines[4] == "long-name.yaml: b.yaml:3: boom"
    assert lines[1].index("1.50") + 4 == lines[2].index("12.25") + 5  # seconds right-aligned
    assert not many.ok


def test_a_worker_that_cannot_see_out_fails_its_spec_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_worker, "SEE_WITHIN_S", 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored after: the worker sets it
    typed = runner.load_spec(spec(tmp_path))
    job = ray_worker.Job(0, typed, tmp_path / "shared", tmp_path / "elsewhere" / "run", Overrides())
    outcome = ray_worker.Worker(None).run(job)
    assert outcome.status == "failed"
    assert "cannot see" in outcome.message and "shared filesystem" in outcome.message
    # The driver, which does see the folder it made, records the failure there.
    job.run_dir.mkdir(parents=True)
    orphan.close(job.run_dir, typed, "failed", outcome.message)
    run = runner.open_run(job.run_dir)
    assert run.status == "failed" and run.manifest.error is not None
    assert "shared filesystem" in run.manifest.error.message
    assert runner.verify(run).ok


def test_a_parent_finishes_a_dead_runs_record_from_its_journal(tmp_path: Path) -> None:
    typed = runner.load_spec(spec(tmp_path))
    recorder = Recorder.start(tmp_path / "runs", typed)
    for index, step_id in [(1, "one"), (2, "two")]:
        output = recorder.write(f"outputs/0{index}-{step_id}/completions.jsonl", b"{}\n")
        recorder.step(m.StepRecord(index, "generate", 5, "ok", 0.1, step_id, outputs=[output]))
    run = recorder.run  # the process "dies" here: no finish
    assert runner.open_run(run).status == "running"
    orphan.close(run, typed, "failed", "its Ray worker vm:1 died while running it")
    closed = runner.open_run(run)
    assert closed.status == "failed"
    assert [s.id for s in closed.manifest.steps] == ["one", "two"]
    assert closed.manifest.error == m.Failure(
        3, f"{typed.file}:7: step 3 (generate)", "its Ray worker vm:1 died while running it"
    )
    assert not (run / m.JOURNAL).exists()
    sums = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=run)
    assert sums.returncode == 0
    orphan.close(run, typed, "interrupted", "late")  # a finished record is left alone
    assert runner.open_run(run).status == "failed"


def test_an_old_manifest_without_origin_reads(tmp_path: Path) -> None:
    typed = runner.load_spec(spec(tmp_path))
    recorder = Recorder.start(tmp_path / "runs", typed)
    finish(recorder, "succeeded")
    data = m.manifest_bytes(recorder.manifest).decode()
    assert '"origin"' in data
    import json

    old = json.loads(data)
    del old["origin"]
    (recorder.run / m.MANIFEST).write_text(json.dumps(old))
    assert runner.open_run(recorder.run).manifest.origin == m.Origin()
