"""Diffusers schedulers by name: the list of classes, and building one as a user would.

`SchedulerClass.from_config(pipe.scheduler.config, **overrides)` is how diffusers users
swap a sampler. It silently drops keys the class does not take, so a misspelt
`use_karas_sigmas` would run the pipeline's default sampler; `build` refuses such a key
first, naming it and the class.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import math
from collections.abc import Mapping
from typing import Any

from runner.errors import StepError, describe
from runner.results import SchedulerUsed
from runner.spec.types import Scheduler


def scheduler_classes() -> list[str]:
    """Every scheduler class diffusers has, by name, sorted: what runner/spec/schedulers.py lists.

    A class whose optional dependency is missing (scipy, torchsde) is still diffusers'
    class: diffusers exports a placeholder under its name, counted here too, so the list
    does not depend on what else is installed.
    """
    import diffusers.schedulers as schedulers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from diffusers.utils import DummyObject

    found = []
    for name in dir(schedulers):
        if not name.endswith("Scheduler"):
            continue
        value = getattr(schedulers, name)
        real = inspect.isclass(value) and issubclass(value, SchedulerMixin)
        if real or isinstance(value, DummyObject):
            found.append(name)
    return sorted(found)


def scheduler_class(name: str) -> Any:
    """The diffusers class NAME; one line when it needs a package that is not installed."""
    import diffusers.schedulers as schedulers
    from diffusers.utils import DummyObject

    cls = getattr(schedulers, name, None)
    if cls is None:
        raise StepError(f"diffusers {_version()} has no scheduler {name}")
    if isinstance(cls, DummyObject):
        missing = [b for b in cls._backends if importlib.util.find_spec(b) is None]
        raise StepError(
            f"{name} needs {' and '.join(missing)}, which is not installed: "
            f"pip install {' '.join(missing)}"
        )
    return cls


def parameters(cls: Any) -> list[str]:
    """The config keys CLS takes: the named parameters of its __init__."""
    return [
        p.name
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def check_options(cls: Any, options: Mapping[str, Any]) -> None:
    """Refuse a key CLS does not take (from_config would drop it without a word)."""
    taken = parameters(cls)
    for key in options:
        if key not in taken:
            close = difflib.get_close_matches(key, taken, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise StepError(f"{cls.__name__} takes no config key '{key}'{hint}")


def build(choice: Scheduler, base: Mapping[str, Any]) -> Any:
    """`cls.from_config(base, **options)`: the pipeline's own config, CHOICE's keys overriding."""
    cls = scheduler_class(choice.type)
    check_options(cls, choice.options)
    try:
        return cls.from_config(base, **choice.options)
    except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
        raise StepError(f"cannot build {choice.type}: {describe(exc)}") from exc


def used(scheduler: Any) -> SchedulerUsed:
    """What a scheduler is, for the record: its class and the config it runs with.

    The config holds the keys the class takes (from_config keeps the previous class's
    keys beside them, unused), as JSON: a non-finite number becomes "inf", "-inf" or "nan".
    """
    taken = set(parameters(type(scheduler)))
    config = {k: _plain(v) for k, v in scheduler.config.items() if k in taken}
    return SchedulerUsed(type(scheduler).__name__, config)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": the manifest is standard JSON
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # trained_betas may be a numpy array
        return _plain(value.tolist())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _version() -> str:
    import diffusers

    return str(diffusers.__version__)


def scheduler_keys() -> dict[str, list[str]]:
    """Each scheduler class's config keys (`parameters`), by name: what
    runner/spec/scheduler_keys.py lists. A class whose optional dependency is missing here
    (diffusers exports a placeholder) is read from its source, so that the list does not
    depend on what else is installed."""
    import diffusers.schedulers as schedulers
    from diffusers.utils import DummyObject

    found: dict[str, list[str]] = {}
    for name in scheduler_classes():
        value = getattr(schedulers, name)
        found[name] = (
            _source_parameters(name) if isinstance(value, DummyObject) else parameters(value)
        )
    return found


def _source_parameters(name: str) -> list[str]:
    """The named parameters of class NAME's __init__, read from diffusers' scheduler sources."""
    import ast
    from pathlib import Path

    import diffusers.schedulers as schedulers

    for file in sorted(Path(schedulers.__file__).parent.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == name:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        args = item.args
                        return [
                            a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs][1:]
                        ]
    return []


def scheduler_keys_source() -> str:
    """runner/spec/scheduler_keys.py as `scheduler_keys()` makes it, before ruff format."""
    lines = [
        '"""Each diffusers scheduler class\'s config keys, by class name: what a `scheduler:`',
        "mapping may set beside `type`, checked by `runner validate` without importing diffusers.",
        "",
        "Generated from the installed diffusers, as schedulers.py is, and a test holds the two",
        "equal; after upgrading diffusers, regenerate it with `make schema`.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"# diffusers {_version()}",
        "SCHEDULER_KEYS: dict[str, tuple[str, ...]] = {",
    ]
    for name, keys in scheduler_keys().items():
        lines += [f'    "{name}": (', *(f'        "{key}",' for key in keys), "    ),"]
    return "\n".join([*lines, "}"]) + "\n"
