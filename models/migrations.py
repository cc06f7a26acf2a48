"""Schema migrations, run programmatically: the CLI, the flows and the tests call `upgrade_database`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command
from models.engine import get_engine, resolve_database_url
from neuraltrade.errors import StorageError

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def alembic_config(database_url: str | None = None) -> Config:
    """Return the Alembic configuration of the project, aimed at `database_url`."""
    ini = _PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        raise StorageError(
            f"migrations not found at {ini}; install neuraltrade from its source tree (pip install -e .)"
        )
    config = Config(str(ini))
    config.set_main_option("script_location", str(_PROJECT_ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", resolve_database_url(database_url).replace("%", "%%"))
    return config


def upgrade_database(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the schema of `database_url` up to `revision` (creating the file if needed)."""
    config = alembic_config(database_url)
    with get_engine(database_url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade_database(database_url: str | None = None, revision: str = "base") -> None:
    """Take the schema of `database_url` down to `revision`."""
    config = alembic_config(database_url)
    with get_engine(database_url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(database_url: str | None = None) -> str | None:
    """Return the schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(database_url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
