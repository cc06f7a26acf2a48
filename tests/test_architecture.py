"""Specification of the project's layering, seams and errors, read from the source with `ast`.

The domain (`neuraltrade/`) never knows a database exists: it imports the standard library and an
explicit list of third-party packages only. The layers stack `neuraltrade` < `models` < `tasks` <
`flows` < `deployments` < `neuraltrade_cli`; each imports itself and lower layers only. SQL that only
SQLite understands lives in `models/dialects/`. Every exception a user can meet is a
`NeuralTradeError` subclass. Each checker (in `tests/architecture.py`) is also run on a synthetic tree
to show that it can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.architecture import (
    LAYERS,
    bare_raises,
    dialect_leaks,
    import_cycles,
    imported_modules,
    layer_violations,
    module_graph,
    python_files,
    third_party_imports,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOMAIN = PROJECT_ROOT / "neuraltrade"
TESTS = PROJECT_ROOT / "tests"
FORBIDDEN_IN_DOMAIN = frozenset(
    {"prefect", "sqlalchemy", "great_expectations", "prometheus_client", "flows", "tasks", "models"}
)
#: Every third-party package the domain imports, and what for. Measured: the test below fails on one
#: more, and on an entry the domain no longer imports. (hnswlib is storage: `models.ann_index`.)
DOMAIN_THIRD_PARTY = {
    "numpy": "vectors, prices and every array computation",
    "pandas": "bar frames, the market data every strategy reads",
    "pyarrow": "fast reading of CSV and Parquet bar files (market.ingest, market.bar_formats)",
    "sklearn": "the neural strategy's classifier (strategies.neural), HDBSCAN of distillation (learning.patterns)",
    "scipy": "the exact binomial test of a pattern against its base rate, the normal quantiles of the deflated Sharpe",
    "statsmodels": "Wilson and Jeffreys intervals, Benjamini-Hochberg (learning.patterns, research.evaluation)",
    "arch": "the stationary bootstrap and Hansen's SPA test (research.evaluation)",
    "cryptography": "Ed25519 signatures of records and checkpoints (provenance.keys)",
    "pymerkle": "the RFC 6962 Merkle tree of the provenance log: roots, inclusion and consistency proofs",
    "threadpoolctl": "one BLAS thread where the domain already runs in parallel (strategies.neural, memory.snapshot)",
}
#: The bare raises that stay, by ``path:function:exception``, each with why no user meets it.
BARE_RAISES_ALLOWED = {
    "models/base.py:table_of:TypeError": (
        "a model class mapped to no table is a programming error, met by the first test that uses the "
        "model; no input reaches it"
    ),
    "deployments/__init__.py:build_deployment:TypeError": (
        "calling it inside a running event loop is a misuse by Python code (the `serve` command calls "
        "it synchronously), and TypeError is what Prefect's own API raises for that misuse"
    ),
}
#: The packages an import cycle is checked in.
ACYCLIC_PACKAGES = ("neuraltrade_cli",)


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


@pytest.mark.parametrize("layer", LAYERS)
def test_the_layers_exist_where_the_rule_expects_them(layer: str) -> None:
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


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> source) under `root`; return `root`."""
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


# -- the layer order ----------------------------------------------------------------------------


def test_the_layer_checker_reports_every_import_of_a_higher_layer_lazy_ones_too(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "neuraltrade/clock.py": "import numpy\nfrom models.engine import get_engine\n",
            "models/engine.py": "from neuraltrade import clock\n\ndef f():\n    from tasks import embed\n",
            "tasks/embed.py": "from models import engine\nimport neuraltrade.clock\n",
            "flows/nightly.py": "import neuraltrade_cli.app\nfrom tasks import embed\n",
            "deployments/__init__.py": "from flows import nightly\n",
            "neuraltrade_cli/app.py": "from deployments import serve\nimport flows.nightly\n",
        },
    )

    assert layer_violations(root) == [
        "neuraltrade/clock.py:2 (neuraltrade) imports models.engine",
        "models/engine.py:4 (models) imports tasks",
        "flows/nightly.py:1 (flows) imports neuraltrade_cli.app",
    ]


def test_each_layer_imports_only_itself_and_the_layers_below_it() -> None:
    assert layer_violations(PROJECT_ROOT) == []


# -- the domain's third-party imports ------------------------------------------------------------


def test_the_third_party_checker_reports_a_package_with_where_it_is_imported(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {"neuraltrade/memory/index.py": "import json\nimport numpy as np\n\ndef build():\n    import hnswlib\n"},
    )

    found = third_party_imports(root, "neuraltrade")

    assert found == {"numpy": ["neuraltrade/memory/index.py:2"], "hnswlib": ["neuraltrade/memory/index.py:5"]}
    assert set(found) - set(DOMAIN_THIRD_PARTY) == {"hnswlib"}


def test_the_domain_imports_only_the_allowed_third_party_packages_and_all_of_them() -> None:
    found = third_party_imports(PROJECT_ROOT, "neuraltrade")

    unexpected = {name: places for name, places in found.items() if name not in DOMAIN_THIRD_PARTY}
    assert unexpected == {}, "neuraltrade/ imports packages off its allow-list"
    assert sorted(found) == sorted(DOMAIN_THIRD_PARTY), "an allow-list entry the domain no longer imports"
    assert "hnswlib" not in DOMAIN_THIRD_PARTY


# -- import cycles -------------------------------------------------------------------------------


def test_the_cycle_checker_finds_a_cycle_closed_by_a_lazy_or_relative_import(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "cli/__init__.py": "from cli import a, c\n",
            "cli/a.py": "from cli.b import helper\n",
            "cli/b.py": "def helper():\n    from cli import a\n",
            "cli/c.py": "from . import a\nfrom .d import run\n",
            "cli/d.py": "def run():\n    from .c import x\n",
            "cli/e.py": "import cli.a.thing\n",
        },
    )

    graph = module_graph(root, "cli")

    assert graph["cli.e"] == {"cli.a"}
    assert import_cycles(graph) == [["cli.a", "cli.b"], ["cli.c", "cli.d"]]


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_a_package_has_no_import_cycle_between_its_modules(package: str) -> None:
    graph = module_graph(PROJECT_ROOT, package)

    assert len(graph) > 3
    assert import_cycles(graph) == []


# -- every exception a user meets is a NeuralTradeError ------------------------------------------


def test_the_raise_checker_reports_bare_exceptions_with_their_function(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(
        "\n".join(
            [
                "from neuraltrade.errors import ConfigError",
                "def parse(text):",
                "    if not text:",
                "        raise ValueError(f'empty {text!r}')",
                "    try:",
                "        return int(text)",
                "    except OverflowError as error:",
                "        raise RuntimeError('too big') from error",
                "class Store:",
                "    def get(self, key):",
                "        raise KeyError",
                "    def put(self, key):",
                "        raise ConfigError(f'bad key {key!r}')",
                "raise TypeError('at import')",
                "raise",
            ]
        ),
        encoding="utf-8",
    )

    assert bare_raises(path) == [
        (4, "parse", "ValueError"),
        (8, "parse", "RuntimeError"),
        (11, "get", "KeyError"),
        (14, "<module>", "TypeError"),
    ]


def test_no_layer_raises_a_bare_value_runtime_type_or_key_error_off_the_allow_list() -> None:
    found = {
        f"{path.relative_to(PROJECT_ROOT).as_posix()}:{function}:{exception}": line
        for layer in LAYERS
        for path in python_files(PROJECT_ROOT, layer)
        for line, function, exception in bare_raises(path)
    }

    assert sorted(set(found) - set(BARE_RAISES_ALLOWED)) == [], "raise a NeuralTradeError subclass instead"
    assert sorted(set(BARE_RAISES_ALLOWED) - set(found)) == [], "an allow-list entry no longer raises"


# -- SQL of one dialect lives behind the dialect seam --------------------------------------------


def test_the_dialect_checker_reports_sqlite_sql_and_driver_imports_outside_the_dialects(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "models/compaction.py": (
                '"""Runs PRAGMA optimize when it is due."""\n'
                "def optimize(connection):\n"
                '    """VACUUM too."""\n'
                '    connection.exec_driver_sql("PRAGMA optimize")\n'
                '    return "vacuumed"\n'
            ),
            "models/dialects/sqlite.py": 'import sqlean\nSETUP = "PRAGMA foreign_keys = ON"\n',
            "tasks/raw.py": "import sqlite_vec\nfrom sqlalchemy.dialects import sqlite\n",
            "neuraltrade_cli/app.py": 'SQL = "INSERT OR REPLACE INTO bars VALUES (?)"\n',
        },
    )

    assert dialect_leaks(root) == [
        "models/compaction.py:4 holds SQLite-only SQL 'PRAGMA optimize'",
        "tasks/raw.py:1 imports sqlite_vec",
        "tasks/raw.py:2 imports sqlalchemy.dialects",
        "neuraltrade_cli/app.py:1 holds SQLite-only SQL 'INSERT OR REPLACE INTO bars VALUES (?)'",
    ]


def test_sqlite_sql_and_drivers_live_in_the_dialect_modules_only() -> None:
    assert dialect_leaks(PROJECT_ROOT) == []
