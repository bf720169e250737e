"""schemas/spec.schema.json is generated: it says so, and it is what the runner builds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runner.spec.schema import schema_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "schemas" / "spec.schema.json"


def test_the_schema_file_is_what_the_runner_builds_byte_for_byte() -> None:
    assert FILE.read_text(encoding="utf-8") == schema_text(), "run `make schema`"


def test_the_schema_file_says_it_is_generated_and_how() -> None:
    comment = json.loads(FILE.read_text(encoding="utf-8"))["$comment"]
    assert "Generated" in comment and "make schema" in comment and "do not edit" in comment


def test_make_schema_writes_the_file() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\nschema:" in makefile
    assert "runner schema > schemas/spec.schema.json" in makefile


def test_the_wheel_ships_no_second_copy_of_the_schema() -> None:
    """The runtime builds the schema from the vocabulary; a copy in the package would be a
    second source that nothing reads."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "force-include" not in wheel
    assert not list((ROOT / "runner").rglob("*.schema.json"))
