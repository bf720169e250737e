"""The grid of a compare step, an X/Y plot: a row per adapter setting, a column per prompt
and seed, each labelled (setting on the left, prompt and seed on top). Pillow only.

Tiles keep the images' pixels where they can: small images are enlarged by a whole factor
(nearest neighbour) so that labels fit beside them, and a grid that would be huge is
shrunk to stay under MAX_PIXELS.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont
    from PIL.ImageFont import ImageFont as BitmapFont

MIN_TILE = 160  # px: a tile narrower than this cannot sit under a readable label
MAX_PIXELS = 40_000_000  # Pillow warns from 89 MP on; a grid stays well below
GAP = 4
PAD = 8
PROMPT_LINES = 3  # longer prompts are cut to this many lines, with "..."
LABEL_WIDTH = 280  # px at most for the setting on the left
MAX_LABEL = 2_000  # characters of a label at most: more would never fit its lines anyway
INK, PALE, PAPER = (20, 20, 20), (96, 96, 96), (255, 255, 255)


@dataclass(frozen=True)
class Layout:
    tile: tuple[int, int]
    font_size: int
    left: int  # width of the label column
    top: int  # height of the header


@cache
def font(size: int) -> FreeTypeFont | BitmapFont:
    """Pillow's bundled font: the same pixels on every machine, nothing to install."""
    return ImageFont.load_default(size=size)


def _clean(text: str) -> str:
    """One line of printable text: whitespace runs become a space, control characters go."""
    text = re.sub(r"\s+", " ", text)
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _width(text: str, size: int) -> float:
    return font(size).getlength(text)


def _label(text: str) -> tuple[str, bool]:
    """TEXT cleaned and cut to MAX_LABEL characters; True when something was cut."""
    # Cleaning looks at a bounded start of the text only: what lies past it is cut anyway
    # (a run of whitespace that long is as good as a cut).
    head = text[: 4 * MAX_LABEL]
    cleaned = _clean(head)
    cut = len(cleaned) > MAX_LABEL or len(head) < len(text)
    return cleaned[:MAX_LABEL].rstrip(), cut


def wrap(text: str, width: float, size: int, max_lines: int) -> list[str]:
    """TEXT in lines no wider than WIDTH px, at most MAX_LINES; what is cut ends in '...'.

    The text is cut to MAX_LABEL characters first, and lines stop at MAX_LINES: the time
    taken grows with what is drawn, never with the length of a prompt.
    """
    label, cut = _label(text)
    lines: list[str] = []
    current = ""
    for word in label.split(" "):
        if len(lines) > max_lines:
            cut = True
            break
        trial = f"{current} {word}".strip()
        if _width(trial, size) <= width:
            current = trial
            continue
        if current:
            lines.append(current)
        while len(word) > 1 and len(lines) <= max_lines:  # a word wider than a line
            fit = _fits(word, width, size)
            if fit >= len(word):
                break
            lines.append(word[: max(1, fit)])
            word = word[max(1, fit) :]
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines or cut:
        last = lines[min(len(lines), max_lines) - 1] if lines else ""
        while last and _width(last + "...", size) > width:
            last = last[:-1]
        lines = [*lines[: min(len(lines), max_lines) - 1], last.rstrip() + "..."]
    return lines or [""]


def _fits(word: str, width: float, size: int) -> int:
    """How many leading characters of WORD fit in WIDTH px (all of it: len(WORD)).

    The prefixes measured grow from small ones, so a long word costs about what fits of it,
    not its whole length for every line cut from it.
    """
    high = 1
    while high < len(word) and _width(word[:high], size) <= width:
        high *= 2
    high = min(high, len(word))
    if _width(word[:high], size) <= width:
        return high
    low, high = high // 2, high - 1
    while low < high:
        mid = (low + high + 1) // 2
        if _width(word[:mid], size) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def layout(size: tuple[int, int], rows: list[str], columns: list[str]) -> Layout:
    """Tile size, font size and label space for a grid of images of SIZE."""
    w, h = size
    factor = math.ceil(MIN_TILE / w) if w < MIN_TILE else 1
    tile_w, tile_h = w * factor, h * factor
    font_size = max(13, min(28, tile_w // 14))
    line = _line_height(font_size)
    label_w = min(LABEL_WIDTH, max(tile_w, 120))
    widest = max((_width(_label(r)[0], font_size) for r in rows), default=0)
    left = int(min(label_w, widest)) + 2 * PAD
    lines = max(len(wrap(c, tile_w - PAD, font_size, PROMPT_LINES)) for c in columns) + 1
    top = lines * line + 2 * PAD
    total = (left + len(columns) * (tile_w + GAP)) * (top + len(rows) * (tile_h + GAP))
    if total > MAX_PIXELS:  # shrink the tiles, keep the labels readable
        shrink = math.sqrt(MAX_PIXELS / total)
        tile_w, tile_h = max(8, int(tile_w * shrink)), max(8, int(tile_h * shrink))
    return Layout((tile_w, tile_h), font_size, left, top)


def _line_height(size: int) -> int:
    return int(size * 1.3)


class Grid:
    """A grid drawn tile by tile, so a large compare never holds all its images at once."""

    def __init__(self, size: tuple[int, int], rows: list[str], columns: list[tuple[str, int]]):
        """Labels drawn now, for tiles made from images of SIZE: ROWS on the left,
        COLUMNS (prompt, seed) on top."""
        self.layout = spec = layout(size, rows, [prompt for prompt, _ in columns])
        tile_w, tile_h = spec.tile
        self.image = Image.new(
            "RGB",
            (spec.left + len(columns) * (tile_w + GAP), spec.top + len(rows) * (tile_h + GAP)),
            PAPER,
        )
        draw = ImageDraw.Draw(self.image)
        size_px, line = spec.font_size, _line_height(spec.font_size)
        for c, (prompt, seed) in enumerate(columns):
            x = spec.left + c * (tile_w + GAP)
            wrapped = wrap(prompt, tile_w - PAD, size_px, PROMPT_LINES)
            y = spec.top - PAD - (len(wrapped) + 1) * line
            for text in wrapped:
                draw.text((x, y), text, font=font(size_px), fill=INK)
                y += line
            draw.text((x, y), f"seed {seed}", font=font(size_px), fill=PALE)
        for r, label in enumerate(rows):
            wrapped = wrap(label, spec.left - 2 * PAD, size_px, max(1, tile_h // line))
            y = spec.top + r * (tile_h + GAP) + (tile_h - len(wrapped) * line) // 2
            for text in wrapped:
                draw.text((PAD, y), text, font=font(size_px), fill=INK)
                y += line

    def paste(self, row: int, column: int, image: Image.Image) -> None:
        tile_w, tile_h = self.layout.tile
        x = self.layout.left + column * (tile_w + GAP)
        y = self.layout.top + row * (tile_h + GAP)
        self.image.paste(_fit(image, self.layout.tile), (x, y))

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", compress_level=6)
        return buffer.getvalue()


def render(
    tiles: list[list[Image.Image]], rows: list[str], columns: list[tuple[str, int]]
) -> Image.Image:
    """The labelled grid: TILES[r][c] under the label COLUMNS[c] (prompt, seed), ROWS[r]."""
    if not tiles or not tiles[0]:
        raise ValueError("a grid needs at least one tile")
    grid = Grid(tiles[0][0].size, rows, columns)
    for r, row in enumerate(tiles):
        for c, image in enumerate(row):
            grid.paste(r, c, image)
    return grid.image


def _fit(image: Image.Image, tile: tuple[int, int]) -> Image.Image:
    rgb = image.convert("RGB")
    if rgb.size == tile:
        return rgb
    enlarging = tile[0] >= rgb.width and tile[1] >= rgb.height
    return rgb.resize(tile, Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS)
