"""Meaning checks of a compare's `metrics:` and `clip:` (what the schema cannot say):
clip_score scores pictures, so it needs model.family diffusers and a `clip` model; a `clip`
model without the metric is a mistake; the model must be one that can load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import Located
from runner.spec import disk
from runner.spec.document import Document, Path_


def metric_problems(doc: Document, steps: list[Any], family: Any, base_dir: Path) -> list[Located]:
    problems: list[Located] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") != "compare":
            continue
        here: Path_ = ("steps", index)
        metrics, clip = step.get("metrics"), step.get("clip")
        listed = metrics if isinstance(metrics, list) else []
        wanted = "clip_score" in listed
        if wanted and family != "diffusers":
            where = (*here, "metrics", listed.index("clip_score"))
            problems.append(
                doc.problem(
                    where,
                    f"clip_score scores images, but model.family is {family}; a text compare "
                    "scores with text expectations taken from data (accuracy), or use op: score",
                )
            )
        elif wanted and not isinstance(clip, dict):
            problems.append(
                doc.problem(
                    (*here, "metrics"),
                    "clip_score needs `clip: {path: ...}`, the CLIP model that embeds the "
                    "images and prompts",
                    key=True,
                )
            )
        elif clip is not None and not wanted:
            problems.append(
                doc.problem(
                    (*here, "clip"),
                    "`clip` names the model of clip_score, but the step's metrics do not ask "
                    "for clip_score",
                    key=True,
                )
            )
        elif wanted and isinstance(clip, dict) and isinstance(clip.get("path"), str):
            problems += disk.clip_problems(doc, (*here, "clip", "path"), clip["path"], base_dir)
    return problems
