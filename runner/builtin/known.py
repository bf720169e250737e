"""Which builtins there are, by name: what validation checks a `builtin:NAME` against.

Importing the makers' modules is cheap: each imports its libraries inside the maker.
"""

from __future__ import annotations

from runner.builtin.entry import Builtin


def catalog() -> dict[str, Builtin]:
    from runner.builtin.causal_lm import CATALOG as TEXT
    from runner.builtin.clip import CATALOG as CLIP
    from runner.builtin.diffusion import CATALOG as IMAGE

    return {**TEXT, **IMAGE, **CLIP}
