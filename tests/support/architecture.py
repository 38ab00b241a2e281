"""Read the shape of the code from its source, without importing it (issue 12).

What tests/unit/test_architecture.py checks, as functions of source text, so that the checker
itself is tested on small synthetic trees:

- :func:`read_tree`: every module under some packages, by dotted name.
- :func:`imports_in`: what one module imports, resolved to the modules of the tree (relative and
  absolute, ``import a.b`` and ``from a import b``), each marked where it runs: at import time,
  inside a function (lazily), or only under ``if TYPE_CHECKING:``.
- :func:`layer_index`, :func:`upward_imports`: the layering, given as an ordered list of layers.
- :func:`import_cycles`: strongly connected groups of modules.
- :func:`long_modules`, :func:`long_classes`: size limits.

Nothing here imports what it reads; it parses it with :mod:`ast`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "Import", "Layer", "Module", "import_cycles", "imports_in", "layer_index", "long_classes",
    "long_modules", "read_tree", "upward_imports",
]

#: Where an import runs: at the module's import, inside a function, or never (type checkers only).
Where = Literal["module", "function", "type_checking"]


@dataclass(frozen=True, slots=True)
class Module:
    """One source file: its dotted name, its text, and whether it is a package's ``__init__``."""

    name: str
    text: str
    is_package: bool = False

    @property
    def package(self) -> str:
        """The package relative imports in this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class Import:
    """``importer`` imports ``imported`` (a module of the tree, or a foreign top-level name)."""

    importer: str
    imported: str
    line: int
    where: Where

    def __str__(self) -> str:
        note = "" if self.where == "module" else f" ({self.where})"
        return f"{self.importer}:{self.line} imports {self.imported}{note}"


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer of the house: a name, and the modules it holds.

    A module is named exactly (``engine.client``), or with its package and everything in it
    (``engine.wire.*``). An exact name wins over a package, a deeper package over a shallower
    one, so a module can sit lower than the package around it (``engine.wire.addresses``).
    """

    name: str
    modules: tuple[str, ...]


def read_tree(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    """Every ``.py`` file under ``root/<package>`` for each package, by dotted module name."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, path.read_text(encoding="utf-8"), is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, Where]]:
    """Every import statement with where it runs (a function's body runs later, if ever)."""

    def visit(node: ast.AST, where: Where) -> Iterable[tuple[ast.Import | ast.ImportFrom, Where]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, "type_checking")
            for child in node.orelse:
                yield from visit(child, where)
            return
        function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        inner: Where = "function" if function and where == "module" else where
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, "module")


def _known(name: str, modules: Mapping[str, Module]) -> str:
    """``name`` as a module of the tree (its longest known prefix), or its top-level package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return parts[0]


def imports_in(module: Module, modules: Mapping[str, Module]) -> list[Import]:
    """What ``module`` imports, each resolved to a module of ``modules`` where it is one.

    ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on ``pkg``
    itself (a name its ``__init__`` defines or re-exports). A package's own ``__init__`` is not
    counted for its submodules: Python runs it first anyway, and listing it would make every
    re-exporting package a cycle with its parts.
    """
    found: list[Import] = []
    for node, where in _import_nodes(ast.parse(module.text)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [_known(alias.name, modules) for alias in node.names]
        else:
            if node.level:
                base = module.package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in modules else _known(source, modules))
        for target in dict.fromkeys(targets):
            if target != module.name:
                found.append(Import(module.name, target, node.lineno, where))
    return found


def layer_index(module: str, layers: Sequence[Layer]) -> int | None:
    """The index of the layer holding ``module`` (the most specific entry wins), or None."""
    best: tuple[int, int] | None = None  # (how specific, layer index)
    for index, layer in enumerate(layers):
        for entry in layer.modules:
            if entry.endswith(".*"):
                package = entry[:-2]
                matches = module == package or module.startswith(package + ".")
                specific = len(package)
            else:
                matches, specific = module == entry, 10_000
            if matches and (best is None or specific > best[0]):
                best = (specific, index)
    return None if best is None else best[1]


def upward_imports(imports: Iterable[Import], layers: Sequence[Layer]) -> list[Import]:
    """The imports from a layer to a layer above it (imports of modules in no layer are not)."""
    upward = []
    for edge in imports:
        low, high = layer_index(edge.importer, layers), layer_index(edge.imported, layers)
        if low is not None and high is not None and high > low:
            upward.append(edge)
    return upward


def import_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Groups of modules that import each other, round a loop (Tarjan's strongly connected
    components of more than one module), each sorted, the groups sorted."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def long_modules(modules: Mapping[str, Module], limit: int) -> dict[str, int]:
    """The modules over ``limit`` lines, with their length."""
    lengths = {name: len(module.text.splitlines()) for name, module in modules.items()}
    return {name: length for name, length in sorted(lengths.items()) if length > limit}


def long_classes(modules: Mapping[str, Module], limit: int) -> dict[str, int]:
    """The classes (nested ones too) over ``limit`` lines, as ``module.Class``, with their
    length from the ``class`` line to the last line of its body."""
    found: dict[str, int] = {}
    for name, module in sorted(modules.items()):
        for node in ast.walk(ast.parse(module.text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found[f"{name}.{node.name}"] = length
    return found
