"""Specification of the project's layering: the domain (`neuraltrade/`) never knows a database exists.

`neuraltrade/` is pure: numpy, pandas and the standard library. Orchestration (Prefect), storage
(SQLAlchemy), data-quality tooling (Great Expectations), metrics (Prometheus) and the layers built on
top of the domain (`flows`, `tasks`, `models`) may import it, never the other way round.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOMAIN = PROJECT_ROOT / "neuraltrade"
TESTS = PROJECT_ROOT / "tests"
FORBIDDEN_IN_DOMAIN = frozenset(
    {"prefect", "sqlalchemy", "great_expectations", "prometheus_client", "flows", "tasks", "models"}
)


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) of every import in `source`, at any depth (functions too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def forbidden_imports(source: str) -> list[tuple[int, str]]:
    """Return (line, module) of every import of a forbidden top-level package in `source`, by line."""
    return sorted((line, name) for line, name in imported_modules(source) if name.split(".")[0] in FORBIDDEN_IN_DOMAIN)


def test_the_import_scanner_sees_every_form_of_import() -> None:
    source = "\n".join(
        [
            "import numpy",
            "import prefect",
            "import sqlalchemy.orm as orm",
            "from models.engine import get_engine",
            "from . import tasks",
            "def load():",
            "    from great_expectations import core",
            "    if True:",
            "        import prometheus_client, os",
            "class A:",
            "    def f(self):",
            "        from flows.nightly import nightly",
            "try:",
            "    import tasks.quality",
            "except ImportError:",
            "    pass",
            "import prefectural",
        ]
    )

    assert forbidden_imports(source) == [
        (2, "prefect"),
        (3, "sqlalchemy.orm"),
        (4, "models.engine"),
        (7, "great_expectations"),
        (9, "prometheus_client"),
        (12, "flows.nightly"),
        (14, "tasks.quality"),
    ]


def domain_files() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def test_the_domain_has_modules_to_check() -> None:
    assert len(domain_files()) >= 5


def test_the_domain_imports_no_orchestration_storage_or_outer_layer() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}"
        for path in domain_files()
        for line, name in forbidden_imports(path.read_text(encoding="utf-8"))
    ]

    assert not found, "neuraltrade/ must stay pure:\n" + "\n".join(found)


def test_the_alembic_folder_is_not_a_package() -> None:
    # With alembic.ini's prepend_sys_path = ., a package called `alembic` here would shadow Alembic.
    assert (PROJECT_ROOT / "alembic" / "env.py").is_file()
    assert not (PROJECT_ROOT / "alembic" / "__init__.py").exists()


def test_every_test_folder_is_a_package() -> None:
    # Without __init__.py, two test modules of the same name in different folders collide.
    # Folders holding no file at all are skipped: git does not track them, so they are not in the tree.
    folders = [TESTS, *(path for path in TESTS.rglob("*") if path.is_dir())]
    missing = [
        str(folder.relative_to(PROJECT_ROOT))
        for folder in folders
        if "__pycache__" not in folder.parts
        and not folder.name.startswith(".")
        and any(path.is_file() for path in folder.rglob("*") if "__pycache__" not in path.parts)
        and not (folder / "__init__.py").is_file()
    ]

    assert not missing, f"test folders without __init__.py: {missing}"


@pytest.mark.parametrize("layer", ["flows", "tasks", "models"])
def test_the_outer_layers_exist_where_the_rule_expects_them(layer: str) -> None:
    assert (PROJECT_ROOT / layer / "__init__.py").is_file()


#: Absolute paths a test or benchmark may name: system programs and files, and deliberately missing ones.
SYSTEM_ROOTS = frozenset({"usr", "proc", "dev", "nonexistent"})
#: The developers' data folder beside the clone, which CI and users do not have.
SHARED_DATA_FOLDER = "/".join(("shared", "data"))


def paths_outside_the_repository(path: Path) -> list[tuple[int, str]]:
    """Return (line, what) for every place in `path` that names a file outside the repository.

    Two forms are caught: a string literal that is an absolute path (other than `SYSTEM_ROOTS`) or
    mentions the developers' ``shared/data`` folder, and ``__file__``'s ``parents[k]`` climbing above the
    repository root.
    """
    depth = len(path.relative_to(PROJECT_ROOT).parts)
    tree = ast.parse(path.read_text())
    # A literal after a placeholder of an f-string continues a URL or a path built on something else.
    continuations = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values[1:]}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if id(node) in continuations or any(character.isspace() for character in text):
                continue  # prose and source text, or the tail of a built path
            parts = text.split("/")
            absolute = text.startswith("/") and len(parts) > 2 and parts[1].isidentifier()
            if SHARED_DATA_FOLDER in text or (absolute and parts[1] not in SYSTEM_ROOTS):
                found.append((node.lineno, text[:60]))
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
            and node.slice.value >= depth
        ):
            found.append((node.lineno, f"parents[{node.slice.value}] from {depth} levels down"))
    return found


def test_the_outside_path_scanner_sees_absolute_paths_shared_data_and_climbing_parents(tmp_path: Path) -> None:
    probe = TESTS / "probe_outside_paths.py"
    source = "\n".join(
        [
            'A = "/work/shared/data/daily/NVDA.csv"',
            'B = "../shared/data"',
            "C = Path(__file__).resolve().parents[2]",
            'D = "/usr/bin/chromium"',
            "E = Path(__file__).resolve().parents[1]",
            'F = f"sqlite:///{tmp_path}/t.db"',
            'G = f"{api}/deployments/name/{name}"',
            '"""Reads /work/shared/data when asked."""',
        ]
    )
    try:
        probe.write_text(source)
        assert [line for line, _ in paths_outside_the_repository(probe)] == [1, 2, 3]
    finally:
        probe.unlink()


def test_no_test_or_benchmark_names_a_path_outside_the_repository() -> None:
    files = sorted([*TESTS.rglob("*.py"), *(PROJECT_ROOT / "bench").rglob("*.py")])
    assert len(files) > 20, f"found only {len(files)} test and benchmark files under {PROJECT_ROOT}"
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): found for path in files if (found := paths_outside_the_repository(path))
    }
    assert offenders == {}
