"""Silence the false alarms the libraries raise on documented adapter calls."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide two false alarms while an adapter loads.

    transformers' load report lists the base weights (and other adapters' weights) as
    MISSING from an adapter file, which they always are; the backends check the fit
    themselves. peft warns that a model gets a second adapter, which is the point.
    """
    log = logging.getLogger("transformers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            yield
    finally:
        log.setLevel(level)
