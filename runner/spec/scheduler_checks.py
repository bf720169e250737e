"""A `scheduler:` mapping's keys checked at validation, from the keys each diffusers class
takes (scheduler_keys.py): a misspelt key in step 5 fails before step 1 runs, not when
step 5 builds its scheduler."""

from __future__ import annotations

import difflib
from typing import Any

from runner.errors import Located
from runner.spec.document import Document, Path_
from runner.spec.scheduler_keys import SCHEDULER_KEYS


def scheduler_problems(doc: Document, data: dict[str, Any]) -> list[Located]:
    """Every key of every scheduler mapping (model, defaults.generate, each step) that its
    class does not take, at the key, with the closest key it does take."""
    places: list[tuple[Path_, Any]] = []
    model, defaults = data.get("model"), data.get("defaults")
    if isinstance(model, dict):
        places.append((("model", "scheduler"), model.get("scheduler")))
    generate = defaults.get("generate") if isinstance(defaults, dict) else None
    if isinstance(generate, dict):
        places.append((("defaults", "generate", "scheduler"), generate.get("scheduler")))
    steps = data.get("steps")
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            places.append((("steps", i, "scheduler"), step.get("scheduler")))
    problems = []
    for here, written in places:
        if not isinstance(written, dict) or written.get("type") not in SCHEDULER_KEYS:
            continue  # absent, or a shape or class the schema reports
        taken = SCHEDULER_KEYS[written["type"]]
        for key in written:
            if key == "type" or key in taken:
                continue
            close = difflib.get_close_matches(str(key), taken, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            message = f"{written['type']} takes no config key '{key}'{hint}"
            problems.append(doc.problem((*here, key), message, key=True))
    return problems
