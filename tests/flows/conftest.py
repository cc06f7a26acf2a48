"""Every flow runs on the embedded default (a SQLite file) and on PostgreSQL with pgvector."""

from __future__ import annotations

import pytest


@pytest.fixture
def database_url(storage_url: str) -> str:
    """The flow's database: a fresh, migrated one of each kind."""
    return storage_url
