"""Whether a step's images are shown above their natural size (CSS draws thumbnails
THUMB px wide): those are drawn crisp, pixel by pixel, instead of blurred."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from runner.errors import RunDirError
from runner.record import layout
from runner.record import manifest as m
from runner.record.trust import run_file

THUMB = 160  # px: img.thumb's width in html.CSS


def small_images(run_dir: Path, step: m.StepRecord) -> bool:
    """The step's first image (grid.png aside) is narrower than a thumbnail; a step's
    images share their size, as its arguments do."""
    pngs = [o.path for o in step.outputs if o.path.endswith(".png")]
    pngs = [p for p in pngs if not p.endswith("/" + layout.GRID)]
    if not pngs:
        return False
    try:
        with Image.open(run_file(run_dir, pngs[0])) as image:  # reads the header only
            return image.width < THUMB
    except (OSError, ValueError, RunDirError):
        return False
