"""Declared dependency ranges against the library pairs known not to work together."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement
from packaging.version import Version

from runner.backends.compat import CONFLICTS, check, problem
from runner.errors import RunnerError
from runner.meta import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DECLARED = {
    (req := Requirement(line)).name.lower().replace("_", "-"): req.specifier
    for line in PROJECT["dependencies"]
}


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a constraints file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.partition("#")[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_the_distribution_is_not_the_unrelated_runner_on_the_index() -> None:
    assert PROJECT["name"] == DISTRIBUTION == "peft-runner"
    assert PROJECT["scripts"] == {"runner": "runner.cli:entry"}


@pytest.mark.parametrize("conflict", CONFLICTS, ids=lambda c: f"{c.library}-{c.other}")
def test_declared_ranges_exclude_every_known_broken_pair(conflict) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = conflict.example
    assert not (
        Version(ours) in DECLARED[conflict.library] and Version(theirs) in DECLARED[conflict.other]
    ), f"pyproject.toml admits {conflict.library} {ours} with {conflict.other} {theirs}"


def test_transformers_524_with_the_newest_peft_is_excluded() -> None:
    # peft 0.21.2 is the newest peft released; transformers 5.24 refuses it.
    assert Version("5.24.0") not in DECLARED["transformers"]
    assert Version("5.23.0") in DECLARED["transformers"]


def test_the_tested_pins_are_inside_the_declared_ranges() -> None:
    tested = pins(ROOT / "constraints.txt")
    for name, specifier in DECLARED.items():
        if name in tested:
            assert Version(tested[name]) in specifier, f"{name}=={tested[name]} vs {specifier}"
    assert problem(tested) is None


@pytest.mark.parametrize("conflict", CONFLICTS, ids=lambda c: f"{c.library}-{c.other}")
def test_every_known_broken_pair_stops_the_start(conflict) -> None:  # type: ignore[no-untyped-def]
    ours, theirs = conflict.example
    with pytest.raises(RunnerError) as caught:
        check({conflict.library: ours, conflict.other: theirs})
    message = str(caught.value)
    assert f"{conflict.library} {ours}" in message and f"{conflict.other} {theirs}" in message
    assert "\n" not in message and len(message) < 200
    assert "pip install" in message


def test_the_check_on_version_strings() -> None:
    with pytest.raises(
        RunnerError, match=r"^transformers 5\.24\.0 does not work with peft 0\.21\.2"
    ):
        check({"transformers": "5.24.0", "peft": "0.21.2", "diffusers": "0.42.1"})
    check({"transformers": "5.23.0", "peft": "0.21.2", "diffusers": "0.42.1"})
    check({"transformers": "5.24.0", "peft": "0.22.0"})  # the peft 5.24 asks for, once released
    check({"transformers": "5.24.0"})  # peft not installed: nothing to say
    check({"transformers": "not-a-version", "peft": "0.21.2"})


def test_the_minimum_transformers_declares_covers_releases_after_the_table() -> None:
    versions = {"transformers": "5.31.0", "peft": "0.23.1"}
    check(versions)  # nothing in the table...
    with pytest.raises(RunnerError, match=r"transformers 5\.31\.0 .* peft 0\.23\.1.* 0\.25\.0"):
        check(versions, peft_needed="0.25.0")  # ...but transformers says it needs more
    check(versions, peft_needed="0.23.0")
    check({"transformers": "5.31.0", "peft": "0.23.0rc1"}, peft_needed="0.23.0.dev0")
