"""The import graph of a package, read with `ast` (imports inside functions included), and the layer rules checked on
it: no cycles between modules, no import from a lower layer up to a higher one, no import between two packages of
the same rank. Used by tests/test_layers.py on `atlas` and `flows`, and on small fixture packages."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Lowest first. A module may import from its own unit and from units of a lower rank; units of one rank are
# independent of each other. A unit is a top-level package or module of `atlas` (or `flows`).
ATLAS_LAYERS: tuple[tuple[str, ...], ...] = (
    ("atlas.core",),
    ("atlas.config",),
    ("atlas.llm",),
    ("atlas.teaching",),
    ("atlas.data", "atlas.rim"),
    ("atlas.training",),
    ("atlas.stages",),
    ("atlas.ops",),
    ("atlas.cli",),
    ("flows",),
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def discover(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of the named top-level packages under `root`: name -> file."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            modules[module_name(root, path)] = path
    return modules


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The known modules `module` imports anywhere in its source (function bodies and `TYPE_CHECKING` blocks too).
    `from pkg import name` counts as an import of `pkg.name` when that is a module, else of `pkg`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, path.name == "__init__.py")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a package path: the deepest known module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    modules = discover(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported}: {self.why}"


def unit_of(module: str, layers: tuple[tuple[str, ...], ...]) -> tuple[int, str] | None:
    """(rank, unit) of a module, or None when no layer owns it."""
    for rank, units in enumerate(layers):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return rank, unit
    return None


def layer_violations(
    graph: Mapping[str, set[str]], layers: tuple[tuple[str, ...], ...], root_package: str
) -> list[Violation]:
    """Imports that point up, or sideways between two units of the same rank; modules no layer owns. The root
    package itself (`atlas/__init__.py`) may be imported by anything and must import nothing of the package."""
    out = []
    for importer, targets in sorted(graph.items()):
        if importer == root_package:
            out += [Violation(importer, t, "the root package imports nothing of the package") for t in sorted(targets)]
            continue
        mine = unit_of(importer, layers)
        if mine is None:
            out.append(Violation(importer, "-", "the module belongs to no layer"))
            continue
        for target in sorted(targets):
            if target == root_package:
                continue
            theirs = unit_of(target, layers)
            if theirs is None:
                out.append(Violation(importer, target, "the imported module belongs to no layer"))
            elif theirs[1] == mine[1]:
                continue
            elif theirs[0] > mine[0]:
                out.append(Violation(importer, target, f"{mine[1]} (rank {mine[0]}) is below {theirs[1]}"))
            elif theirs[0] == mine[0]:
                out.append(Violation(importer, target, f"{mine[1]} and {theirs[1]} are on the same rank"))
    return out


def closure(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module `start` reaches through imports, itself included."""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen
