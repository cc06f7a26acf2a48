"""Fixtures of the task specifications: a migrated SQLite file per test, never a mocked session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.engine import dispose_engines
from models.migrations import upgrade_database


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file in the test's temporary folder, migrated to the newest schema."""
    url = f"sqlite:///{tmp_path}/t.db"
    upgrade_database(url)
    yield url
    dispose_engines()
