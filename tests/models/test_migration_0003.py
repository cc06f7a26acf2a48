"""Specification of migration 0003 (the trading engine's tables): up, down and up again, matching the models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from alembic import command
from models import trading
from models.backtest_runs import list_runs
from models.base import Base, table_of
from models.engine import dispose_engines, get_engine, session_scope
from models.migrations import alembic_config, current_revision, downgrade_database, head_revision, upgrade_database
from models.order_records import save_signals
from models.repositories import upsert_bars
from tests.models.test_migrations import schema_tables
from tests.models.test_repositories import bar_frame
from tests.models.test_trading import RUN_ID, managed_orders, run, save, signal
from tests.models.trade_support import store_run

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
TRADING_TABLES = {
    "backtest_runs",
    "backtest_trades",
    "backtest_equity",
    "signals",
    "orders",
    "order_events",
    "risk_rejections",
    "model_versions",
}


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/migrated.db"
    dispose_engines()


def test_the_trading_models_are_exactly_the_tables_0003_adds_and_the_fills_0004_adds() -> None:
    models = {
        table_of(mapper.class_).name for mapper in Base.registry.mappers if mapper.class_.__module__ == trading.__name__
    }

    assert models == TRADING_TABLES | {"fills"}


def test_upgrading_a_fresh_file_creates_the_trading_tables_and_the_schema_matches_the_models(url: str) -> None:
    upgrade_database(url)

    assert current_revision(url) == head_revision()
    assert schema_tables(url) >= TRADING_TABLES | {"fills"}
    command.check(alembic_config(url))  # raises if the migrated schema and the models differ


def test_constraints_and_indexes_follow_the_naming_convention(url: str) -> None:
    upgrade_database(url)
    inspector = inspect(get_engine(url))

    assert {index["name"] for index in inspector.get_indexes("orders")} >= {"ix_orders_run_id"}
    assert {index["name"] for index in inspector.get_indexes("signals")} == {
        "ix_signals_symbol_timestamp",
        "ix_signals_run_id",
    }
    assert {index["name"] for index in inspector.get_indexes("backtest_runs")} == {
        "ix_backtest_runs_strategy_created_at",
        "ix_backtest_runs_config_digest",
    }
    assert {key["name"] for key in inspector.get_foreign_keys("orders")} == {
        "fk_orders_run_id_backtest_runs",
        "fk_orders_signal_id_signals",
    }
    assert [unique["name"] for unique in inspector.get_unique_constraints("order_events")] == [
        "uq_order_events_order_id_sequence"
    ]


def test_downgrading_to_0002_drops_only_the_trading_tables(url: str) -> None:
    upgrade_database(url)
    with session_scope(url, write=True) as session:
        upsert_bars(session, bar_frame(5), source="test.csv", now=NOW)
    oms, _ = managed_orders()
    with session_scope(url, write=True) as session:
        store_run(session, run())
    save(url, oms.orders(), run_id=RUN_ID)

    downgrade_database(url, "0002")

    assert current_revision(url) == "0002"
    assert not TRADING_TABLES & schema_tables(url)
    with get_engine(url).connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM bars").scalar() == 5


def test_a_database_downgraded_to_0002_upgrades_again_and_takes_runs(url: str) -> None:
    upgrade_database(url)
    downgrade_database(url, "0002")

    upgrade_database(url)

    command.check(alembic_config(url))
    with session_scope(url, write=True) as session:
        store_run(session, run())
        save_signals(session, [signal()], run_id=RUN_ID)
        assert [overview.id for overview in list_runs(session)] == [RUN_ID]
