"""Which spec a free worker takes next, so that each base model is loaded as few times as
possible while no worker waits needlessly.

A worker keeps taking specs on the model it holds. When none is left, it takes the largest
group of specs whose model no worker holds. Only when every group is someone's does it
join the largest one, and then only when that group still has two specs or more: a second
load of a model is paid only where it saves time. Pure Python, no Ray.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Job = TypeVar("Job")


@dataclass
class Plan(Generic[Job]):
    """Jobs queued by the key of their model, in the order each key first appeared."""

    queues: dict[Hashable, deque[Job]] = field(default_factory=dict)

    def add(self, key: Hashable, job: Job, first: bool = False) -> None:
        """Queue JOB under KEY; FIRST puts it ahead of the others (a retry)."""
        queue = self.queues.setdefault(key, deque())
        if first:
            queue.appendleft(job)
        else:
            queue.append(job)

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def next(self, holding: Hashable | None, held: list[Hashable]) -> tuple[Hashable, Job] | None:
        """The (key, job) a free worker holding model HOLDING takes; HELD: the models the
        other busy workers hold. None: nothing worth taking now."""
        if holding is not None and self.queues.get(holding):
            return holding, self.queues[holding].popleft()
        waiting = [(len(q), k) for k, q in self.queues.items() if q]
        free = [(n, k) for n, k in waiting if k not in held]
        shared = [(n, k) for n, k in waiting if n >= 2]
        for choice in (free, shared):
            if choice:
                key = max(choice, key=lambda pair: pair[0])[1]  # max keeps the first of ties
                return key, self.queues[key].popleft()
        return None

    def drain(self) -> list[Job]:
        """Every job not taken, in queue order; the plan is empty after."""
        left = [job for queue in self.queues.values() for job in queue]
        self.queues.clear()
        return left
