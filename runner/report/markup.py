"""Small pieces of safe HTML: escaped text, short hashes, links that stay in the run."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

# What a run writes under outputs/: step folders named NN-ID with [a-z0-9._-] ids.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


def e(value: Any) -> str:
    """VALUE as text that HTML shows verbatim, inside elements and quoted attributes."""
    if value is None:
        return ""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def short(digest: Any) -> str:
    """The first 12 hex digits of a sha256 or commit, as git and the diff report show them."""
    return str(digest)[:12] if digest else ""


def href(rel: str) -> str | None:
    """A relative URL for a file of the run, or None for a path that would leave it.

    The record is input like any other: a path with '..', a scheme or odd characters is
    never turned into a link.
    """
    if not _SAFE_PATH.fullmatch(rel) or ".." in rel.split("/"):
        return None
    return quote(rel)


def image(rel: str, alt: str) -> str:
    """A thumbnail that opens the full-size image when clicked."""
    url = href(rel)
    if url is None:
        return f"<span class=muted>(not shown: unsafe path {e(rel)})</span>"
    return (
        f'<a href="{url}"><img class=thumb src="{url}" alt="{e(alt)}" loading=lazy '
        f"decoding=async></a>"
    )
