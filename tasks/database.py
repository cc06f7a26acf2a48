"""Tasks that prepare the database."""

from __future__ import annotations

from prefect import task

from models.engine import resolve_database_url
from models.migrations import upgrade_database
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def prepare_database(database_url: str | None = None) -> str:
    """Migrate the database to the newest schema (creating it if needed); return its resolved URL."""
    url = resolve_database_url(database_url)
    upgrade_database(url)
    return url
