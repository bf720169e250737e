"""Session-wide test settings and fixtures.

- Never reach the hub; a private cache home per session ($XDG_CACHE_HOME), whose
  `runner/builtin` is a persistent folder shared by sessions (see `_builtins`), so the tiny
  builtin models are made once per format and libraries, not once per session.
- The hypothesis profile (HYPOTHESIS_PROFILE=long for a long fuzz run, default fast).
- Tiers are folders: tests/unit (no torch), tests/models, tests/process. Every test is marked
  with its tier's name, so `-m` still selects, but a tier is run by its folder
  (`pytest tests/unit`) so that it never imports the modules of the tiers it skips.
- `pytest tests/unit` fails the unit test that imported torch, or one test when collection did.
- Under pytest-xdist, torch's threads are shared out among the workers.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.metadata
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "models", "process")
HEAVY = ("torch", "transformers", "diffusers", "peft")

# Set before any test module imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Under pytest-xdist (`-n auto`, the default options) each worker gets its share of the cores
# for torch's threads: two workers of two threads on two cores spin-wait on each other, and
# the suite took three times as long. Set before any test module imports torch.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


def _builtins() -> Path:
    """The persistent builtin cache: $RUNNER_TEST_BUILTINS, else under the user's cache dir,
    keyed by what the builtins are made from (the makers' source, FORMAT among it, and the
    versions of the libraries that make them), so any change makes them again."""
    if os.environ.get("RUNNER_TEST_BUILTINS"):
        return Path(os.environ["RUNNER_TEST_BUILTINS"])
    key = hashlib.sha256()
    for maker in sorted((TESTS.parent / "runner" / "builtin").glob("*.py")):
        key.update(maker.name.encode() + b"\0" + maker.read_bytes() + b"\0")
    for library in (*HEAVY, "safetensors", "tokenizers"):
        try:
            key.update(f"{library}=={importlib.metadata.version(library)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            key.update(f"{library} missing\0".encode())
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(user) / "runner-tests" / f"builtin-{key.hexdigest()[:16]}"


if "RUNNER_TEST_CACHE" not in os.environ:
    os.environ["RUNNER_TEST_CACHE"] = tempfile.mkdtemp(prefix="runner-test-cache-")
    _shared = _builtins()
    _shared.mkdir(parents=True, exist_ok=True)
    (Path(os.environ["RUNNER_TEST_CACHE"]) / "runner").mkdir(exist_ok=True)
    (Path(os.environ["RUNNER_TEST_CACHE"]) / "runner" / "builtin").symlink_to(_shared)
os.environ["XDG_CACHE_HOME"] = os.environ["RUNNER_TEST_CACHE"]

# `fast` keeps the fuzz tier to seconds in `make test`; `long` is for a night on a spare machine.
settings.register_profile("fast", max_examples=100, deadline=timedelta(seconds=10))
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


class _FirstTorchImport(importlib.abc.MetaPathFinder):
    """Remembers where torch was first imported from, to name it if the unit tier did."""

    stack: str | None = None

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torch" and self.stack is None:
            frames = [
                frame
                for frame in traceback.extract_stack()[:-1]
                if not any(part in frame.filename for part in ("<frozen", "_pytest", "pluggy"))
            ]
            self.stack = "".join(traceback.format_list(frames[-12:]))
        return None


_FIRST_TORCH = _FirstTorchImport()
sys.meta_path.insert(0, _FIRST_TORCH)


def tier(item: pytest.Item) -> str | None:
    try:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if parts and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = tier(item)
        if name in ("models", "process"):
            item.add_marker(name)


def _heavy_imported() -> list[str]:
    return [name for name in HEAVY if name in sys.modules]


_GUARD: dict[str, bool] = {"on": False}  # a unit-only session: no test may import torch


def pytest_collection_finish(session: pytest.Session) -> None:
    # Each pytest-xdist worker collects the same items, so each decides alike.
    _GUARD["on"] = bool(session.items) and all(tier(item) == "unit" for item in session.items)


@pytest.fixture(autouse=True)
def _unit_tier_imports_no_torch(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a unit-only session, fail the first test that finds a deep-learning library
    imported (by collection) or that imports one, naming where torch was first imported."""
    if not _GUARD["on"]:
        yield
        return
    if _heavy_imported():
        _GUARD["on"] = False  # said once (in each worker)
        pytest.fail(
            f"collecting tests/unit imported {', '.join(_heavy_imported())}: the unit tier never "
            f"imports a deep-learning library. torch was first imported here:\n{_FIRST_TORCH.stack}",
            pytrace=False,
        )
    yield
    if _heavy_imported():
        _GUARD["on"] = False
        pytest.fail(
            f"{request.node.nodeid} imported {', '.join(_heavy_imported())}; a unit test never "
            f"does. torch was first imported here:\n{_FIRST_TORCH.stack}",
            pytrace=False,
        )
