"""Specification of revision 0009 (issue 14, point 5): a token for every write to a collection.

A collection written to before the revision gets a token for its current version, so that its next
graph file can name the write it was sealed at; downgrade drops the tokens and nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

from models.engine import dispose_engines
from models.migrations import current_revision, downgrade_database, upgrade_database
from tests.models.test_migration_0007 import execute, rows


def test_a_written_collection_gets_a_token_for_its_version_and_downgrade_drops_only_the_tokens(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    upgrade_database(url, "0008")
    for name, version in (("written", 7), ("empty", 0)):
        execute(
            url,
            "INSERT INTO collections (name, dimension, metric, quantization, index_type, version, fingerprint, "
            "fingerprint_digest, created_at) VALUES (?, 4, 'cosine', 'none', 'hnsw', ?, '{}', 'x', 0)",
            (name, version),
        )

    upgrade_database(url, "0009")

    [(collection, version, token)] = rows(
        url,
        "SELECT c.name, v.version, v.token FROM collection_versions AS v "
        "JOIN collections AS c ON c.id = v.collection_id",
    )
    assert (collection, version) == ("written", 7) and re.fullmatch("[0-9a-f]{32}", token)

    downgrade_database(url, "0008")

    assert current_revision(url) == "0008"
    assert rows(url, "SELECT name, version FROM collections ORDER BY name") == [("empty", 0), ("written", 7)]
    assert rows(url, "SELECT name FROM sqlite_master WHERE name = 'collection_versions'") == []
    dispose_engines()
