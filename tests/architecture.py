"""The checkers `tests/test_architecture.py` runs on the source tree (and on synthetic trees, to show each can fail).

Each reads source with `ast` only, never imports it, so a check runs the same on a broken tree and
counts every import, at any depth: lazy imports inside functions are imports too.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

#: The layers, lowest first: a package may import itself and the layers before it, never one after it.
#: `deployments` imports `flows` (to serve them) and the command line imports `deployments` (`serve`),
#: so it sits above `flows` and below `neuraltrade_cli`.
LAYERS = ("neuraltrade", "models", "tasks", "flows", "deployments", "neuraltrade_cli")
#: The exceptions a user must never meet bare: each condition has its `NeuralTradeError` subclass.
BARE_EXCEPTIONS = frozenset({"ValueError", "RuntimeError", "TypeError", "KeyError"})
#: Where SQL only one kind of database understands may be written: the dialect modules.
DIALECT_FOLDER = "models/dialects"
#: SQL text only SQLite or sqlite-vec understands (upper case, as SQL is written here; prose says "vacuum").
SQLITE_ONLY_SQL = re.compile(
    r"\bPRAGMA\b|\bvec0\b|sqlite_master|\bINSERT\s+OR\b|\bATTACH\b|BEGIN IMMEDIATE|\bVACUUM\b|\bjson_each\b"
    r"|\bdbstat\b|\bvec_(?:int8|bit|version)\(|\bMATCH\b"
)
#: Modules only the dialect modules may import: the SQLite drivers and each dialect's own SQL constructs.
DIALECT_ONLY_MODULES = ("sqlean", "sqlite_vec", "sqlite3", "sqlalchemy.dialects")


def python_files(root: Path, package: str) -> list[Path]:
    """Return every Python file of `package` under `root`, sorted, caches left out."""
    return sorted(path for path in (root / package).rglob("*.py") if "__pycache__" not in path.parts)


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) of every import in `source`, at any depth (functions too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


# -- the layer order ----------------------------------------------------------------------------


def layer_violations(root: Path, layers: Sequence[str] = LAYERS) -> list[str]:
    """Return ``path:line`` of every import of a higher layer than the importing file's, in order."""
    rank = {name: position for position, name in enumerate(layers)}
    found = []
    for layer in layers:
        for path in python_files(root, layer):
            for line, name in imported_modules(path.read_text(encoding="utf-8")):
                imported = name.split(".")[0]
                if rank.get(imported, -1) > rank[layer]:
                    found.append(f"{path.relative_to(root).as_posix()}:{line} ({layer}) imports {name}")
    return found


# -- third-party imports of the domain ----------------------------------------------------------


def third_party_imports(root: Path, package: str, first_party: Sequence[str] = LAYERS) -> dict[str, list[str]]:
    """Return, per third-party top-level package `package` imports, the ``path:line`` of each import."""
    ours = {*first_party, "__future__"}
    found: dict[str, list[str]] = {}
    for path in python_files(root, package):
        for line, name in imported_modules(path.read_text(encoding="utf-8")):
            top = name.split(".")[0]
            if top not in ours and top not in sys.stdlib_module_names:
                found.setdefault(top, []).append(f"{path.relative_to(root).as_posix()}:{line}")
    return found


# -- import cycles within a package -------------------------------------------------------------


def module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Return which modules of `package` each of its modules imports (lazy and relative imports included).

    ``from pkg import name`` is an import of module ``pkg.name`` when that is a module, else of ``pkg``;
    an import of ``pkg.mod.attribute`` is one of ``pkg.mod``.
    """
    modules: dict[str, Path] = {}
    for path in python_files(root, package):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                targets = [submodule if submodule in modules else base for submodule in submodules]
            for target in targets:
                module = _longest_module(target, modules)
                if module is not None and module != name:
                    graph[name].add(module)
    return graph


def _longest_module(dotted: str, modules: Mapping[str, Path]) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Return every group of modules that import each other, directly or through others (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.get(module, ())):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(groups)


# -- bare exceptions ----------------------------------------------------------------------------


def bare_raises(path: Path) -> list[tuple[int, str, str]]:
    """Return (line, enclosing function or ``<module>``, exception) of every ``raise`` of a `BARE_EXCEPTIONS`."""
    found: list[tuple[int, str, str]] = []

    def walk(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Raise) and child.exc is not None:
                raised = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(raised, ast.Name) and raised.id in BARE_EXCEPTIONS:
                    found.append((child.lineno, function, raised.id))
            walk(child, inner)

    walk(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


# -- SQL of one dialect -------------------------------------------------------------------------


def dialect_leaks(root: Path, packages: Sequence[str] = LAYERS) -> list[str]:
    """Return ``path:line`` of SQLite-only SQL text (outside docstrings) or of an import of a dialect-only
    module, anywhere in `packages` but `DIALECT_FOLDER`."""
    found = []
    for package in packages:
        for path in python_files(root, package):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(DIALECT_FOLDER + "/"):
                continue
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and SQLITE_ONLY_SQL.search(node.value)
                ):
                    found.append(f"{relative}:{node.lineno} holds SQLite-only SQL {node.value[:50]!r}")
            for line, name in imported_modules(source):
                if any(name == module or name.startswith(module + ".") for module in DIALECT_ONLY_MODULES):
                    found.append(f"{relative}:{line} imports {name}")
    return found
