"""A run followed from outside its process (a Ray worker's, on the shared --out): the
steps its journal gained since the last look, as the lines a local run prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.errors import RunnerError
from runner.record import manifest as m


@dataclass
class Followed:
    run_dir: Path
    began: float  # perf_counter() when the run was handed out
    seen: int = 0  # journal lines already told

    def new_steps(self, total: int) -> list[str]:
        """`step N/TOTAL OP  S.SSs` for each step finished since the last call."""
        try:
            steps = m.read_journal(self.run_dir)
        except (RunnerError, OSError):  # being written, or sealed away at the run's end
            return []
        fresh, self.seen = steps[self.seen :], max(self.seen, len(steps))
        return [
            f"step {s.index}/{total} {s.op:<12}"
            + (f" {s.status}" if s.status != "ok" else "")
            + f"  {s.seconds:.2f}s"
            for s in fresh
        ]
