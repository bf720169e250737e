"""The import graph of runner/: no cycle, and every import points down the layer order.

Every import is read with ast: module level and inside functions alike, the package root
(`runner/__init__.py`) included, relative imports resolved. `from P import n` is an import
of the module P.n when that is a module, else of P.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runner"

# The allowed direction, written once: a module may import from its own layer or a lower one.
# Names are module names or package prefixes (`runner.spec` holds every runner.spec.*);
# the longest prefix that matches a module decides its layer.
LAYERS: list[tuple[str, ...]] = [
    ("runner.meta", "runner.errors"),
    # What a backend makes (completions, pictures): plain data that backends hand to record.
    ("runner.results",),
    # What the builtins are (names, kinds, makers that import their libraries inside).
    (
        "runner.builtin.entry",
        "runner.builtin.known",
        "runner.builtin.causal_lm",
        "runner.builtin.clip",
        "runner.builtin.diffusion",
    ),
    # The spec language, and the rules over names and local folders it shares with backends.
    ("runner.spec", "runner.sources", "runner.sources.names", "runner.sources.folders"),
    ("runner.record",),
    ("runner.report",),
    # What touches the model libraries or the hub: backends, builtins made, hub fetching.
    ("runner.backends", "runner.builtin", "runner.sources.hub"),
    ("runner.running",),
    ("runner.audit",),
    ("runner.api", "runner"),
    ("runner.cli", "runner.__main__"),
]


def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: name -> (file, is a package)."""
    found = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (file, package)
    return found


def imports(name: str, file: Path, package: bool, known: set[str]) -> set[str]:
    """The runner modules NAME imports, anywhere in its file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif source in known:
                    out.add(source)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, file, pkg, known) for name, (file, pkg) in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(name: str) -> int:
    best, level = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level is None:
        raise AssertionError(f"{name} is in no layer of LAYERS; add it where it belongs")
    return level


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} -> {target}"
        for name, targets in edges.items()
        for target in targets
        if layer(target) > layer(name)
    )


def test_the_reader_sees_function_level_relative_and_root_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "runner"
    (pkg / "spec").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from runner.api import run\n")
    (pkg / "api.py").write_text("from runner.spec import load\n")
    (pkg / "spec" / "__init__.py").write_text("")
    (pkg / "spec" / "load.py").write_text("def f():\n    from .. import api\n")
    (pkg / "spec" / "types.py").write_text("from . import load\nimport runner\n")
    known = {"runner", "runner.api", "runner.spec", "runner.spec.load", "runner.spec.types"}
    assert imports("runner.spec.load", pkg / "spec" / "load.py", False, known) == {"runner.api"}
    assert imports("runner.spec.types", pkg / "spec" / "types.py", False, known) == {
        "runner.spec.load",
        "runner",
    }
    assert imports("runner.api", pkg / "api.py", False, known) == {"runner.spec.load"}
    edges = {
        "runner": {"runner.api"},
        "runner.api": {"runner.spec.load"},
        "runner.spec.load": {"runner.api"},
        "runner.spec.types": {"runner"},
    }
    assert cycles(edges) == [["runner.api", "runner.spec.load"]]
    assert upward(edges) == ["runner.spec.load -> runner.api", "runner.spec.types -> runner"]


def test_every_module_has_a_layer() -> None:
    for name in graph():
        layer(name)


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_layers() -> None:
    bad = upward(graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", ["runner.meta", "runner.errors"])
def test_the_bottom_imports_nothing_of_the_runner(name: str) -> None:
    assert graph()[name] == set()
