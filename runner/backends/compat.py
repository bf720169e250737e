"""Which releases of the model libraries work together, checked when a backend starts.

pyproject.toml's ranges keep pip away from every pair below (tests/unit/test_compat.py holds
them to it). The check is for environments pip did not resolve (`--no-deps`, a source
tree on PYTHONPATH, an upgrade of one library alone): one line naming both versions,
instead of a ValueError at the first adapter call. Only version strings are read here;
no library is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from runner.errors import RunnerError


@dataclass(frozen=True)
class Conflict:
    """Releases of two libraries that do not work together, and how to get a pair that does."""

    library: str
    versions: str  # a PEP 440 specifier
    other: str
    other_versions: str
    why: str
    fix: str  # the pip command that makes a working pair
    example: tuple[str, str]  # released versions of the two that fail together

    def matches(self, installed: Mapping[str, str | None]) -> bool:
        return _within(installed.get(self.library), self.versions) and _within(
            installed.get(self.other), self.other_versions
        )


CONFLICTS = (
    Conflict(
        "transformers",
        ">=5.24",
        "peft",
        "<0.22",
        "its adapter methods refuse peft below 0.22.0, which is not released yet",
        "pip install 'transformers<5.24'",
        ("5.24.0", "0.21.2"),
    ),
    Conflict(
        "transformers",
        ">=5.20",
        "peft",
        "<0.20",
        "its adapter methods refuse peft below 0.20.0",
        "pip install 'peft>=0.20'",
        ("5.23.0", "0.19.1"),
    ),
    Conflict(
        "transformers",
        ">=5",
        "diffusers",
        "<0.36",
        "diffusers imports names that transformers 5 removed",
        "pip install 'diffusers>=0.41'",
        ("5.23.0", "0.35.0"),
    ),
    Conflict(
        "transformers",
        ">=5",
        "diffusers",
        "<0.41",
        "diffusers fails to load kohya LoRAs for the text encoders (IndexError)",
        "pip install 'diffusers>=0.41'",
        ("5.23.0", "0.40.0"),
    ),
)


def installed(names: tuple[str, ...] = ("transformers", "peft", "diffusers")) -> dict[str, str]:
    """The installed version of each distribution that is installed."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def problem(versions: Mapping[str, str | None], peft_needed: str | None = None) -> str | None:
    """What is wrong with these versions together, in one line; None when nothing is known.

    `peft_needed` is the oldest peft the installed transformers accepts, as transformers
    itself declares it (`MIN_PEFT_VERSION`); it covers releases newer than this table.
    """
    for conflict in CONFLICTS:
        if conflict.matches(versions):
            return (
                f"{conflict.library} {versions[conflict.library]} does not work with "
                f"{conflict.other} {versions[conflict.other]}: {conflict.why}; {conflict.fix}"
            )
    transformers, peft = versions.get("transformers"), versions.get("peft")
    if transformers and peft and peft_needed and not _within(peft, f">={peft_needed}"):
        return (
            f"transformers {transformers} does not work with peft {peft}: its adapter methods "
            f"refuse peft below {peft_needed}; install that peft or an older transformers"
        )
    return None


def check(versions: Mapping[str, str | None], peft_needed: str | None = None) -> None:
    """Raise a RunnerError naming both versions when these releases do not work together."""
    found = problem(versions, peft_needed)
    if found:
        raise RunnerError(found)


def _within(version: str | None, specifier: str) -> bool:
    if version is None:
        return False
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False
