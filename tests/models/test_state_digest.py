"""Specification of `models.state_digest`: equal for the same content whatever the order and history of
the writes, different for any change of content."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from models.engine import session_scope
from models.migrations import upgrade_database
from models.state_digest import REFERENCES, WRITE_HISTORY_COLUMNS, WRITE_HISTORY_TABLES, state_digests
from models.tables import BarRecord
from models.vector_store import VectorDB
from tests.postgresql import fresh_database, sqlite_only

DIMENSION = 8
START = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture
def database_url(storage_url: str) -> str:
    return storage_url


@pytest.fixture
def other_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second fresh database of the same kind as `database_url`."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'other.db'}"
        upgrade_database(url)
        yield url
        return
    template = request.getfixturevalue("migrated_templates")["postgresql"]
    with fresh_database(request.getfixturevalue("postgresql_server"), template=template) as url:
        yield url


def _digests(url: str) -> dict[str, str]:
    with session_scope(url) as session:
        return state_digests(session)


def _write(url: str, order: list[int], vectors: np.ndarray) -> None:
    memory = VectorDB(DIMENSION, name="states", database_url=url)
    for position in order:  # one write each: versions, sequences and creation times differ with the order
        memory.upsert_many(
            [f"k{position}"], vectors[[position]], [{"n": position, "symbol": "NVDA"}], timestamps=[START]
        )


def test_the_same_items_written_in_another_order_have_the_same_digests(database_url: str, other_url: str) -> None:
    vectors = np.random.default_rng(1).standard_normal((6, DIMENSION)).astype(np.float32)
    _write(database_url, [0, 1, 2, 3, 4, 5], vectors)
    _write(other_url, [5, 3, 1, 0, 2, 4], vectors)

    assert _digests(database_url) == _digests(other_url)
    assert _digests(database_url)["vectors:states"].startswith("6:")


def test_a_changed_vector_or_value_changes_its_digest_and_no_other(database_url: str, other_url: str) -> None:
    vectors = np.random.default_rng(1).standard_normal((4, DIMENSION)).astype(np.float32)
    _write(database_url, [0, 1, 2, 3], vectors)
    changed = vectors.copy()
    changed[2, 0] += 1e-3
    _write(other_url, [0, 1, 2, 3], changed)

    first, second = _digests(database_url), _digests(other_url)
    assert sorted(name for name in first if first[name] != second[name]) == ["vectors:states"]


@sqlite_only
def test_a_write_time_is_left_out_and_a_price_is_not(database_url: str) -> None:
    import pandas as pd

    from models import repositories

    frame = pd.DataFrame(
        {
            "symbol": ["NVDA", "NVDA"],
            "timestamp": [START, START + timedelta(days=1)],
            "open": [1.0, 2.0],
            "high": [1.5, 2.5],
            "low": [0.5, 1.5],
            "close": [1.2, 2.2],
            "volume": [10.0, 20.0],
            "spread": [float("nan"), float("nan")],
        }
    )
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=START)
    before = _digests(database_url)["bars"]
    with session_scope(database_url, write=True) as session:
        session.execute(update(BarRecord).values(ingested_at=START + timedelta(hours=5)))
    assert _digests(database_url)["bars"] == before
    with session_scope(database_url, write=True) as session:
        session.execute(update(BarRecord).where(BarRecord.close == 2.2).values(close=2.3))
    assert _digests(database_url)["bars"] != before


def test_every_column_and_table_it_leaves_out_exists() -> None:
    """A renamed column would otherwise silently enter the digest (or one left out stay named here)."""
    from models.base import Base

    tables = Base.metadata.tables
    for table, columns in WRITE_HISTORY_COLUMNS.items():
        assert set(columns) <= set(tables[table].columns.keys()), table
    assert set(WRITE_HISTORY_TABLES) <= set(tables)
    for (table, column), (referred, natural) in REFERENCES.items():
        assert column in tables[table].columns and set(natural) <= set(tables[referred].columns.keys())
