"""Specification of migration 0005 (the learning loop's tables) on a database the previous release wrote.

The previous release's database is `tests/data/previous_schema/revision_0003.db.gz` (see
test_migration_0004.py) brought to revision 0004 by the migrations, once per module: 600 NVDA bars,
their observations and market-state vectors, two runs with their trades, signals, orders and rejections.
"""

from __future__ import annotations

import gzip
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alembic import command
from models.engine import dispose_engines, get_engine
from models.migrations import alembic_config, current_revision, downgrade_database, upgrade_database

PREVIOUS = Path(__file__).parents[1] / "data" / "previous_schema" / "revision_0003.db.gz"
LEARNING_TABLES = {"episodes", "verdicts", "critiques", "distillations", "patterns", "counterfactuals", "trials"}


@pytest.fixture(scope="module")
def previous_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The previous release's database at revision 0004 (migrated once; each test copies it)."""
    path = tmp_path_factory.mktemp("previous") / "revision_0004.db"
    with gzip.open(PREVIOUS, "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    upgrade_database(f"sqlite:///{path}", "0004")
    dispose_engines()
    yield path


@pytest.fixture
def url(previous_file: Path, tmp_path: Path) -> Iterator[str]:
    target = tmp_path / "migrated.db"
    shutil.copyfile(previous_file, target)
    yield f"sqlite:///{target}"
    dispose_engines()


def rows(url: str, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql, parameters)]


def execute(url: str, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql(sql, parameters)


def tables(url: str) -> set[str]:
    return {row[0] for row in rows(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def every_row(url: str, names: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of each table of `names` (sqlite-vec's tables included), sorted."""
    return {name: sorted(rows(url, f'SELECT * FROM "{name}"'), key=repr) for name in sorted(names)}


def test_the_previous_database_is_at_revision_0004_with_runs_and_no_learning_tables(url: str) -> None:
    assert current_revision(url) == "0004"
    assert rows(url, "SELECT count(*) FROM backtest_runs") == [(2,)]
    assert not tables(url) & LEARNING_TABLES


def test_upgrading_adds_the_learning_tables_and_keeps_every_stored_row(url: str) -> None:
    kept = tables(url) - {"alembic_version"}
    before = every_row(url, kept)

    upgrade_database(url, "0005")

    assert current_revision(url) == "0005"
    assert tables(url) == kept | LEARNING_TABLES | {"alembic_version"}
    assert every_row(url, kept) == before  # every row of every table, so every count too
    assert all(rows(url, f"SELECT count(*) FROM {name}") == [(0,)] for name in LEARNING_TABLES)
    assert rows(url, "PRAGMA foreign_key_check") == []


def test_the_upgraded_schema_matches_the_models(url: str) -> None:
    upgrade_database(url)

    command.check(alembic_config(url))  # raises if the migrated schema and the models differ


def test_the_migrated_foreign_keys_cascade_from_a_stored_run(url: str) -> None:
    upgrade_database(url)
    [(run_hex,)] = rows(url, "SELECT id FROM backtest_runs WHERE strategy = 'memory_vote'")
    episode, verdict, critique, counterfactual = (uuid.uuid4().hex for _ in range(4))
    execute(
        url,
        "INSERT INTO episodes (id, trade_id, run_id, strategy, strategy_id, symbol, side, decision_time, "
        "outcome_known_at, net_return, record) VALUES (?, ?, ?, 'memory_vote', 'memory_vote-1', 'NVDA', 1, 1, 2, "
        "0.01, '{}')",
        (episode, uuid.uuid4().hex, run_hex),
    )
    execute(
        url,
        "INSERT INTO verdicts (id, episode_id, judge_digest, success, score, known_at, record) "
        "VALUES (?, ?, 'ab', 1, 0.5, 2, '{}')",
        (verdict, episode),
    )
    execute(
        url,
        "INSERT INTO critiques (id, episode_id, verdict_id, config_digest, lessons, known_at, record) "
        "VALUES (?, ?, ?, 'cd', '[\"clean_win\"]', 2, '{}')",
        (critique, episode, verdict),
    )
    execute(
        url,
        "INSERT INTO counterfactuals (id, run_id, trade_id, alternative, regret, record) "
        "VALUES (?, ?, ?, 'no_trade', 0.1, '{}')",
        (counterfactual, run_hex, uuid.uuid4().hex),
    )

    execute(url, "DELETE FROM backtest_runs WHERE id = ?", (run_hex,))

    assert all(rows(url, f"SELECT count(*) FROM {name}") == [(0,)] for name in LEARNING_TABLES)
    assert rows(url, "SELECT count(*) FROM backtest_runs") == [(1,)]


def test_downgrading_to_0004_drops_the_learning_tables_and_keeps_the_rest(url: str) -> None:
    kept = tables(url) - {"alembic_version"}
    before = every_row(url, kept)
    upgrade_database(url)

    downgrade_database(url, "0004")

    assert current_revision(url) == "0004"
    assert tables(url) == kept | {"alembic_version"}
    assert every_row(url, kept) == before


def test_a_downgraded_database_upgrades_again(url: str) -> None:
    upgrade_database(url)
    downgrade_database(url, "0004")

    upgrade_database(url)

    assert tables(url) >= LEARNING_TABLES
    command.check(alembic_config(url))
