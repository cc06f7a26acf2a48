"""Specification of backups and the restore drill (issue 14, point 8): a database with its memory, runs
and signed log is backed up with its checkpoints, restored into an empty database, and its log verifies
there; a changed backup file or a non-empty target is refused, nothing written."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models import run_summaries
from models.backups import back_up, restore
from models.dialects.postgresql import PG_BIN_VARIABLE
from models.engine import dispose_engines, session_scope
from models.vector_store import VectorDB
from neuraltrade.errors import StorageError
from neuraltrade.memory.collection import Query
from tests.postgresql import fresh_database, sqlite_only

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


@pytest.fixture
def database_url(storage_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if storage_url.startswith("postgresql"):
        # The test server's own pg_dump and pg_restore, of its version.
        monkeypatch.setenv(PG_BIN_VARIABLE, str(request.getfixturevalue("postgresql_server").bin_path))
    return storage_url


@pytest.fixture
def night(database_url: str, sample_csv: Path, tmp_path: Path) -> Path:
    """The sample ingested, embedded, and its log sealed and verified; the checkpoint folder."""
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars
    from flows.verify_provenance import verify_provenance

    checkpoints = tmp_path / "checkpoints"
    ingest_bars.fn(paths=[str(sample_csv)], database_url=database_url)
    embed_observations.fn(database_url=database_url)
    verify_provenance.fn(database_url=database_url, checkpoint_dir=str(checkpoints))
    return checkpoints


@pytest.fixture
def empty_target(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as `database_url`."""
    with ExitStack() as stack:
        if database_url.startswith("sqlite"):
            yield f"sqlite:///{tmp_path}/restored/restored.db"
        else:
            yield stack.enter_context(fresh_database(request.getfixturevalue("postgresql_server")))
        dispose_engines()


def nearest(url: str, query: np.ndarray) -> list[tuple[str, float]]:
    store = VectorDB.open("market_state", database_url=url)
    return [(result.id, round(result.distance, 6)) for result in store.search(Query(query, k=5))]


def test_a_restored_backup_holds_every_row_answers_the_same_searches_and_its_log_verifies(
    database_url: str, night: Path, empty_target: str, tmp_path: Path
) -> None:
    from tasks.provenance import verify_with

    with session_scope(database_url) as session:
        before = run_summaries.table_counts(session)
    dimension = VectorDB.open("market_state", database_url=database_url).spec.dimension
    query = np.random.default_rng(3).standard_normal(dimension).astype(np.float32)
    expected = nearest(database_url, query)

    manifest = back_up(database_url, tmp_path / "backup", night, NOW)
    restored = restore(tmp_path / "backup", empty_target, tmp_path / "restored-checkpoints")

    assert manifest == restored and manifest["tables"] == before and before["observations"] == 120
    assert {name for name in manifest["files"] if name.startswith("checkpoints/")} >= {"checkpoints/keys.json"}
    with session_scope(empty_target) as session:
        assert run_summaries.table_counts(session) == before
    assert nearest(empty_target, query) == expected
    report = verify_with(empty_target, directory=str(tmp_path / "restored-checkpoints"))
    assert report.ok, report.summary()


def test_a_changed_backup_or_a_target_holding_tables_is_refused_and_nothing_is_written(
    database_url: str, night: Path, empty_target: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backup"
    back_up(database_url, folder, night, NOW)
    with pytest.raises(StorageError, match="is not empty"):
        back_up(database_url, folder, night, NOW)

    with pytest.raises(StorageError, match="already holds"):
        restore(folder, database_url, None)  # the source itself: it holds every table

    changed = next(path for path in folder.iterdir() if path.name.startswith("database."))
    original = changed.read_bytes()
    changed.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(StorageError, match=rf"backup file '{changed.name}' .* changed since the backup"):
        restore(folder, empty_target, tmp_path / "restored-checkpoints")
    assert not (tmp_path / "restored-checkpoints").exists()


@sqlite_only
def test_the_restore_drill_through_the_command_line(database_url: str, night: Path, tmp_path: Path) -> None:
    from neuraltrade_cli import app

    runner = CliRunner()
    target = f"sqlite:///{tmp_path}/drill/restored.db"
    folder = tmp_path / "drill-backup"

    backed = runner.invoke(app, ["backup", str(folder), "--db", database_url, "--checkpoint-dir", str(night)])
    shutil.rmtree(night)  # the original checkpoints are lost with the machine
    restored = runner.invoke(app, ["restore", str(folder), "--db", target, "--checkpoint-dir", str(night)])
    verified = runner.invoke(app, ["verify", "--db", target, "--checkpoint-dir", str(night)])

    assert backed.exit_code == 0 and "backed up" in backed.output, backed.output
    assert restored.exit_code == 0 and "restored the backup of" in restored.output, restored.output
    assert verified.exit_code == 0, verified.output
