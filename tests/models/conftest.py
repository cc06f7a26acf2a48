"""Fixtures of the `VectorDB` specifications (tests/models/test_vector_db_*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import pytest

from models.engine import dispose_engines
from models.migrations import upgrade_database
from models.vector_store import VectorDB
from neuraltrade.memory.collection import METRICS
from tests.models.vector_support import (
    DIMENSION,
    Stored,
    item_metadata,
    moment,
    new_database,
    random_vectors,
)
from tests.postgresql import fresh_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    """The same stores on SQLite and on PostgreSQL."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = new_database(tmp_path_factory.mktemp("vector-db"))
        else:
            url = stack.enter_context(fresh_database(request.getfixturevalue("postgresql_server")))
            upgrade_database(url)
        yield from _stored(url)


def _stored(url: str) -> Iterator[Stored]:
    count = 900
    rng = np.random.default_rng(42)
    keys = [f"state-{row}" for row in range(count)]
    vectors = random_vectors(count, seed=3)
    metadata = [item_metadata(rng, row) for row in range(count)]
    timestamps = [moment(row) for row in range(count)]
    stores = {}
    for metric in METRICS:
        store = VectorDB(DIMENSION, name=f"by_{metric}", metric=metric, database_url=url)
        store.insert_many(keys, vectors, metadata, timestamps=timestamps)
        stores[metric] = store
    yield Stored(url, keys, vectors, metadata, timestamps, stores)
    dispose_engines()
