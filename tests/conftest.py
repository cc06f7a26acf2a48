"""Session-wide test set-up: a private Prefect home, no network, and an opt-in Prefect test server.

Prefect reads its settings once, when ``prefect`` is first imported, so the environment below is set
at the top of this module, which pytest imports before any test module or lower conftest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Real market data the tests read, all inside the repository: the daily files shipped in the
#: package (`neuraltrade/sample_data`) and fixtures vendored under `tests/data` (the one-minute index
#: file whose header lacks its time column). Nothing outside the clone is read.
TEST_DATA = Path(__file__).resolve().parent / "data"
DAILY_DATA = Path(__file__).resolve().parents[1] / "neuraltrade" / "sample_data"
INTRADAY_FILE = TEST_DATA / "intraday" / "INDEX_2006-01-02_1min.csv"

#: Seconds the session's Prefect test server may take to answer; the default 30 is too tight on
#: a loaded two-core machine.
HARNESS_STARTUP_TIMEOUT_SECONDS = 90

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="neuraltrade-prefect-home-"))


def _isolate_prefect() -> None:
    # Drop whatever the developer's shell says about Prefect (an API URL or key would send test
    # runs to their server or to Prefect Cloud), then pin a home that no one else uses.
    for name in [name for name in os.environ if name.startswith("PREFECT_")]:
        del os.environ[name]
    os.environ.update(
        {
            "PREFECT_HOME": str(_PREFECT_HOME),
            "PREFECT_PROFILES_PATH": str(_PREFECT_HOME / "profiles.toml"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            # A flow or task called outside `prefect_harness` then fails at once with "No Prefect
            # API URL provided", instead of quietly starting a private server for ~12 s.
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(HARNESS_STARTUP_TIMEOUT_SECONDS),
            "PREFECT_CLI_COLORS": "false",
        }
    )


_isolate_prefect()


def _no_terminal_size() -> None:
    # pytest-xdist's workers inherit COLUMNS=80 and LINES=24; the commands would then wrap their tables
    # as on an 80-column terminal instead of writing them whole, as to a pipe. Tests that want a width
    # set it themselves.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


_no_terminal_size()


def _signing_key() -> None:
    # Every write signs what it stores: one key for the session, made here, where no one else looks.
    from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE, SigningKey, write_key_file

    path = _PREFECT_HOME / "signing.key"
    write_key_file(path, SigningKey.generate())
    os.environ[KEY_ENVIRONMENT_VARIABLE] = str(path)


_signing_key()


#: Modules that run for minutes: collected first, so that pytest-xdist's workers start on them at once
#: and each runs its share of them in a row (their module-scoped fixtures then set up once per worker),
#: instead of one worker running them alone at the end (the suite took 16.7 min that way).
LONG_MODULES = ("tests/flows/test_recovery.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the items of `LONG_MODULES` to the front, the rest in their order."""
    root = Path(str(config.rootpath))
    items.sort(key=lambda item: item.path.relative_to(root).as_posix() not in LONG_MODULES)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A Prefect API server on a temporary SQLite database, shared by every test that asks for it.

    Ask for it in tests that call flows or tasks directly (``my_flow(...)``, not ``my_flow.fn(...)``);
    it starts once per session, on first use, and costs about ten seconds.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_TIMEOUT_SECONDS):
        yield


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file in the test's temporary folder, migrated to the newest schema."""
    from models.engine import dispose_engines
    from models.migrations import upgrade_database

    url = f"sqlite:///{tmp_path}/t.db"
    upgrade_database(url)
    yield url
    dispose_engines()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[Any]:
    """A PostgreSQL server for the whole session (`tests.postgresql`), started on first use."""
    from tests.postgresql import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def postgresql_url(postgresql_server: Any) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of the session's server; its URL (``postgresql+psycopg``)."""
    from tests.postgresql import fresh_database

    with fresh_database(postgresql_server) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Databases migrated once per session, by kind, that `storage_url` copies: the migration of each
    test's database would cost about 0.25 s on SQLite and more on PostgreSQL."""
    return {"folder": tmp_path_factory.mktemp("templates")}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_templates: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A fresh database migrated to the newest schema, once on SQLite and once on PostgreSQL (whose
    HNSW index files and checkpoints go in the test's folder, as a SQLite file's lie beside it). A
    test module whose storage runs on both overrides ``database_url`` with it."""
    from models.collections import INDEX_FOLDER_VARIABLE
    from models.engine import dispose_engines
    from models.migrations import upgrade_database
    from tasks.provenance import CHECKPOINT_DIRECTORY_VARIABLE
    from tests.postgresql import fresh_database, migrated_template

    if request.param == "sqlite":
        template = migrated_templates["folder"] / "template.db"
        if not template.exists():
            upgrade_database(f"sqlite:///{template}")
            dispose_engines()
        target = tmp_path / "t.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        dispose_engines()
        return
    server = request.getfixturevalue("postgresql_server")
    monkeypatch.setenv(INDEX_FOLDER_VARIABLE, str(tmp_path / "indexes"))
    monkeypatch.setenv(CHECKPOINT_DIRECTORY_VARIABLE, str(tmp_path / "checkpoints"))
    if "postgresql" not in migrated_templates:
        migrated_templates["postgresql"] = migrated_template(server)
    with fresh_database(server, template=migrated_templates["postgresql"]) as url:
        yield url


@pytest.fixture
def sample_csv(tmp_path: Path) -> Path:
    """The first 120 bars of the real NVDA file, as a small daily file named NVDA.csv."""
    source = DAILY_DATA / "NVDA.csv"
    target = tmp_path / "NVDA.csv"
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:121]))
    return target
