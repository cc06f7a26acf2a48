"""Every test here runs on the embedded default (a SQLite file) and on PostgreSQL with pgvector."""

from __future__ import annotations

import pytest


@pytest.fixture
def database_url(storage_url: str) -> str:
    """A fresh, migrated database of each kind."""
    return storage_url
