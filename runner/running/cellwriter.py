"""A compare step's outputs, written as its cells come: each PNG at once, then cells.jsonl
and grid.png when the step ends.

A compare of many large images never holds them all: a picture is written and pasted into
the grid as soon as it is made (only the first row waits, until the grid's columns are
known). A step that fails or is interrupted leaves the PNGs it made and a cells.jsonl
that describes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.meta import __version__
from runner.record import cells as c
from runner.record import layout
from runner.record.files import sha256_bytes
from runner.results import Completion, GeneratedImage
from runner.spec.weights import Weight

if TYPE_CHECKING:
    from PIL.Image import Image

    from runner.record import manifest as m
    from runner.record.pnginfo import Hashes
    from runner.record.recorder import Recorder
    from runner.report.grid import Grid


class CellWriter:
    """Writes one compare step's cells into FOLDER of the run, in the order they are added."""

    def __init__(self, recorder: Recorder, folder: str, rows: list[str]) -> None:
        self.recorder, self.folder, self.rows = recorder, folder, rows
        self.outputs: list[m.Output] = []
        self.cells: list[c.CellRecord] = []  # in order; distances are set before `close`
        self.row_of: list[int] = []  # each cell's row index
        self.digests: list[str | None] = []  # a PNG's sha256; None: the line's, at close
        self.first_row: list[tuple[str, int, Image]] = []  # until the grid can be drawn
        self.grid: Grid | None = None
        self.placed: dict[int, int] = {}  # row -> tiles pasted
        self.hashes: Hashes | None = None  # the model's and adapters', for the infotext

    def add(
        self,
        row: int,
        adapters: dict[str, Weight] | None,
        results: list[Completion] | list[GeneratedImage],
    ) -> None:
        """One cell's results (several images with num_images_per_prompt), made under ROW."""
        label = self.rows[row]
        for result in results:
            digest: str | None = None
            if isinstance(result, GeneratedImage):
                name = layout.picture(len(self.cells))
                cell = c.CellRecord(label, adapters, result.prompt, result.seed, image=name)
                digest = self._picture(row, name, label, adapters, result)
            else:
                cell = c.CellRecord(
                    label,
                    adapters,
                    result.prompt,
                    result.seed,
                    text=result.text,
                    token_ids=list(result.token_ids),
                )
            self.cells.append(cell)
            self.row_of.append(row)
            self.digests.append(digest)

    def _picture(
        self,
        row: int,
        name: str,
        label: str,
        adapters: dict[str, Weight] | None,
        pic: GeneratedImage,
    ) -> str:
        from runner.record.civitai import hashes
        from runner.record.pnginfo import png_bytes

        if self.hashes is None:
            self.hashes = hashes(self.recorder.manifest)
        data = png_bytes(
            pic,
            adapters=adapters,
            spec_sha256=self.recorder.spec_sha256,
            runner_version=__version__,
            row=label,
            hashes=self.hashes,
        )
        self.outputs.append(self.recorder.write(f"{self.folder}/{name}", data))
        if row == 0:
            self.first_row.append((pic.prompt, pic.seed, pic.image))
        else:
            self._paste(row, pic.image)
        return self.outputs[-1].sha256

    def _paste(self, row: int, image: Image) -> None:
        if self.grid is None:
            self._start_grid()
        assert self.grid is not None
        column = self.placed.get(row, 0)
        if column < len(self.first_row):  # a row has as many tiles as the first
            self.grid.paste(row, column, image)
        self.placed[row] = column + 1

    def _start_grid(self) -> None:
        from runner.report.grid import Grid

        size = self.first_row[0][2].size
        self.grid = Grid(size, self.rows, [(p, s) for p, s, _ in self.first_row])
        for column, (_, _, image) in enumerate(self.first_row):
            self.grid.paste(0, column, image)

    def close(self, complete: bool = True) -> tuple[list[m.Output], list[dict[str, Any]]]:
        """Write cells.jsonl (and grid.png for a complete image compare); return the step's
        files, cells.jsonl first, and its cells for the step's record."""
        lines = [c.line(cell) for cell in self.cells]
        listing = self.recorder.write(f"{self.folder}/{layout.CELLS}", b"".join(lines))
        outputs = [listing, *self.outputs]
        if complete and self.first_row:
            if self.grid is None:
                self._start_grid()
            assert self.grid is not None
            outputs.append(self.recorder.write(f"{self.folder}/{layout.GRID}", self.grid.png()))
        listed = [
            {
                "row": cell.row,
                "prompt": cell.prompt,
                "seed": cell.seed,
                "sha256": digest or sha256_bytes(line),
            }
            for cell, digest, line in zip(self.cells, self.digests, lines, strict=True)
        ]
        return outputs, listed
