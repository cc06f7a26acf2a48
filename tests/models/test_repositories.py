"""Specification of the repositories (`models.repositories`): idempotent upserts and lossless reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from models import repositories, run_summaries
from models.base import Base
from models.engine import session_scope
from models.repositories import QuarantineEntry
from models.tables import BarRecord, QuarantinedRow, RunSummary
from neuraltrade.errors import StorageError
from neuraltrade.market.bars import BAR_COLUMNS, TIMESTAMP_DTYPE, conform_bar_frame

NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
START = datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=UTC)
DIGEST = "a" * 64


def bar_frame(count: int, *, symbol: str = "AAA", start: datetime = START, spread: float = np.nan) -> pd.DataFrame:
    """`count` valid one-minute bars of `symbol` whose prices rise by one cent per bar."""
    closes = 100.0 + 0.01 * np.arange(count)
    return conform_bar_frame(
        pd.DataFrame(
            {
                "symbol": [symbol] * count,
                "timestamp": [start + timedelta(minutes=i, microseconds=i) for i in range(count)],
                "open": closes - 0.005,
                "high": closes + 0.02,
                "low": closes - 0.02,
                "close": closes,
                "volume": 1_000.0 + np.arange(count),
                "spread": spread,
            }
        )
    )


def stored_bars(url: str) -> list[tuple[object, ...]]:
    with session_scope(url) as session:
        rows = session.execute(select(BarRecord.__table__).order_by(BarRecord.id)).all()
    return [tuple(row) for row in rows]


def upsert(url: str, frame: pd.DataFrame, *, now: datetime = NOW, source: str = "test.csv") -> int:
    with session_scope(url, write=True) as session:
        return repositories.upsert_bars(session, frame, source=source, now=now)


# -- bars -------------------------------------------------------------------------------------------


@pytest.fixture
def database_url(storage_url: str) -> str:
    """This module's storage runs on SQLite and on PostgreSQL."""
    return storage_url


def test_upserting_new_bars_counts_every_row_as_changed(database_url: str) -> None:
    assert upsert(database_url, bar_frame(20)) == 20
    assert len(stored_bars(database_url)) == 20


@pytest.mark.parametrize("spread", [np.nan, 0.0004], ids=["without-spread", "with-spread"])
def test_upserting_the_same_frame_twice_changes_nothing_the_second_time(database_url: str, spread: float) -> None:
    frame = bar_frame(20, spread=spread)
    upsert(database_url, frame)
    before = stored_bars(database_url)

    # A later clock and another source must not touch identical bars either.
    assert upsert(database_url, frame, now=NOW + timedelta(days=1), source="again.csv") == 0

    assert stored_bars(database_url) == before


def test_changed_values_are_updated_and_counted(database_url: str) -> None:
    frame = bar_frame(20)
    upsert(database_url, frame)
    changed = frame.copy()
    changed.loc[[3, 7], "close"] += 0.001
    changed.loc[11, "volume"] = 5.0
    changed.loc[15, "spread"] = 0.0002  # NULL -> a value is a change too
    later = NOW + timedelta(hours=1)

    assert upsert(database_url, changed, now=later, source="fixed.csv") == 4

    with session_scope(database_url) as session:
        frame_back, _ = repositories.load_bars(session, "AAA")
        records = session.scalars(select(BarRecord).order_by(BarRecord.timestamp)).all()
    pd.testing.assert_frame_equal(frame_back, changed)
    updated = [record.source for record in records]
    assert [i for i, source in enumerate(updated) if source == "fixed.csv"] == [3, 7, 11, 15]
    assert {records[i].ingested_at for i in (3, 7, 11, 15)} == {later}
    assert {records[i].ingested_at for i in (0, 1, 2)} == {NOW}


def test_new_and_changed_bars_together_are_counted_once_each(database_url: str) -> None:
    upsert(database_url, bar_frame(10))
    extended = bar_frame(15)
    extended.loc[0, "open"] = 99.0

    assert upsert(database_url, extended) == 1 + 5
    assert len(stored_bars(database_url)) == 15


def test_an_empty_frame_writes_nothing(database_url: str) -> None:
    assert upsert(database_url, bar_frame(0)) == 0
    assert stored_bars(database_url) == []


def test_the_same_timestamp_of_two_symbols_is_two_bars(database_url: str) -> None:
    upsert(database_url, bar_frame(5, symbol="AAA"))
    upsert(database_url, bar_frame(5, symbol="BBB"))

    with session_scope(database_url) as session:
        assert repositories.list_symbols(session) == ["AAA", "BBB"]
        assert run_summaries.table_counts(session)["bars"] == 10


def test_loaded_bars_have_aware_utc_timestamps_equal_to_the_microsecond(database_url: str) -> None:
    frame = bar_frame(30)
    upsert(database_url, frame)

    with session_scope(database_url) as session:
        loaded, ids = repositories.load_bars(session, "AAA")
        records = session.scalars(select(BarRecord).order_by(BarRecord.timestamp)).all()

    assert str(loaded["timestamp"].dtype) == TIMESTAMP_DTYPE
    assert list(loaded.columns) == list(BAR_COLUMNS)
    pd.testing.assert_frame_equal(loaded, frame)
    assert ids.tolist() == [record.id for record in records]
    assert [record.timestamp for record in records] == [moment.to_pydatetime() for moment in frame["timestamp"]]
    assert all(record.timestamp.utcoffset() == timedelta(0) for record in records)


def test_loading_since_a_moment_includes_that_moment(database_url: str) -> None:
    frame = bar_frame(30)
    upsert(database_url, frame)
    with session_scope(database_url) as session:
        stamps = repositories.bar_timestamps(session, "AAA")
        since = int(stamps[10])
        loaded, _ = repositories.load_bars(session, "AAA", since=since)

    pd.testing.assert_frame_equal(loaded, frame.iloc[10:].reset_index(drop=True))


def test_bar_timestamps_are_epoch_microseconds_ascending(database_url: str) -> None:
    frame = bar_frame(5)
    upsert(database_url, frame.iloc[::-1].reset_index(drop=True))

    with session_scope(database_url) as session:
        stamps = repositories.bar_timestamps(session, "AAA")

    expected = [
        (moment.to_pydatetime() - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        for moment in frame["timestamp"]
    ]
    assert stamps.tolist() == expected


moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC))
prices = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(moments, prices, st.floats(min_value=0, max_value=1e12), st.none() | st.floats(0, 1)),
        min_size=1,
        max_size=20,
        unique_by=lambda row: row[0],
    )
)
def test_bars_round_trip_exactly(database_url: str, rows: list[tuple[datetime, float, float, float | None]]) -> None:
    # One database for every example: each starts by emptying the table.
    rows = sorted(rows)
    frame = conform_bar_frame(
        pd.DataFrame(
            {
                "symbol": "RT",
                "timestamp": [row[0] for row in rows],
                "open": [row[1] for row in rows],
                "high": [row[1] for row in rows],
                "low": [row[1] for row in rows],
                "close": [row[1] for row in rows],
                "volume": [row[2] for row in rows],
                "spread": [np.nan if row[3] is None else row[3] for row in rows],
            }
        )
    )
    with session_scope(database_url, write=True) as session:
        session.execute(delete(BarRecord))
        assert repositories.upsert_bars(session, frame, source="rt", now=NOW) == len(frame)
    with session_scope(database_url) as session:
        loaded, _ = repositories.load_bars(session, "RT")
        stored = session.scalars(select(BarRecord.timestamp).order_by(BarRecord.timestamp)).all()

    pd.testing.assert_frame_equal(loaded, frame)
    assert stored == [row[0] for row in rows]
    assert upsert(database_url, frame) == 0


# -- quarantine -------------------------------------------------------------------------------------


def quarantined(url: str) -> list[tuple[str, int, list[str], list[str], str]]:
    with session_scope(url) as session:
        rows = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.source_digest, QuarantinedRow.line))
        return [(row.source_digest, row.line, row.failed_checks, row.raw_values, row.source) for row in rows]


ENTRIES = [
    QuarantineEntry(line=3, failed_checks=("not_null:volume",), raw_values=("2024-01-02", "1", "2", "0.5", "1", "")),
    QuarantineEntry(line=7, failed_checks=("field_count:expected_6_was_2",), raw_values=("x", "y")),
]


def quarantine(url: str, entries: list[QuarantineEntry], *, digest: str = DIGEST, source: str = "in.csv") -> int:
    with session_scope(url, write=True) as session:
        return repositories.quarantine_rows(session, source=source, source_digest=digest, entries=entries, now=NOW)


def test_quarantined_rows_keep_line_checks_and_raw_values(database_url: str) -> None:
    assert quarantine(database_url, ENTRIES) == 2

    assert quarantined(database_url) == [
        (DIGEST, 3, ["not_null:volume"], ["2024-01-02", "1", "2", "0.5", "1", ""], "in.csv"),
        (DIGEST, 7, ["field_count:expected_6_was_2"], ["x", "y"], "in.csv"),
    ]


def test_quarantining_the_same_rows_again_does_not_double_them(database_url: str) -> None:
    quarantine(database_url, ENTRIES)
    before = quarantined(database_url)

    quarantine(database_url, ENTRIES)

    assert quarantined(database_url) == before


def test_a_requarantined_row_takes_the_new_checks_and_source(database_url: str) -> None:
    quarantine(database_url, ENTRIES)
    again = [QuarantineEntry(line=3, failed_checks=("a", "b"), raw_values=ENTRIES[0].raw_values)]

    quarantine(database_url, again, source="moved.csv")

    assert quarantined(database_url)[0] == (DIGEST, 3, ["a", "b"], list(ENTRIES[0].raw_values), "moved.csv")
    assert len(quarantined(database_url)) == 2


def test_the_same_line_of_another_file_content_is_another_row(database_url: str) -> None:
    quarantine(database_url, ENTRIES)
    quarantine(database_url, ENTRIES, digest="b" * 64)

    assert len(quarantined(database_url)) == 4


def test_quarantining_nothing_writes_nothing(database_url: str) -> None:
    assert quarantine(database_url, []) == 0
    assert quarantined(database_url) == []


# -- runs -------------------------------------------------------------------------------------------


def test_a_started_run_is_running_until_finished(database_url: str) -> None:
    run_id = uuid.UUID(int=1)
    with session_scope(database_url, write=True) as session:
        assert (
            run_summaries.start_run(session, kind="nightly", config_digest="c" * 64, now=NOW, run_id=run_id) == run_id
        )
    with session_scope(database_url) as session:
        [run] = run_summaries.last_runs(session)
        assert (run.id, run.kind, run.status, run.finished_at, run.details) == (run_id, "nightly", "running", None, {})
        assert run.started_at == NOW

    finished = NOW + timedelta(minutes=5)
    with session_scope(database_url, write=True) as session:
        run_summaries.finish_run(session, run_id, status="completed", details={"bars": 12}, now=finished)
    with session_scope(database_url) as session:
        [run] = run_summaries.last_runs(session)
    assert (run.status, run.details, run.finished_at) == ("completed", {"bars": 12}, finished)


def test_starting_the_same_run_again_does_not_duplicate_it(database_url: str) -> None:
    run_id = uuid.UUID(int=7)
    for _ in range(2):
        with session_scope(database_url, write=True) as session:
            run_summaries.start_run(session, kind="ingest", config_digest="c" * 64, now=NOW, run_id=run_id)

    with session_scope(database_url) as session:
        assert run_summaries.table_counts(session)["run_summaries"] == 1


def test_finishing_a_run_never_started_is_a_storage_error_naming_it(database_url: str) -> None:
    missing = uuid.UUID(int=42)
    with pytest.raises(StorageError, match=str(missing)), session_scope(database_url, write=True) as session:
        run_summaries.finish_run(session, missing, status="failed", details={}, now=NOW)


def test_last_runs_are_the_newest_first_up_to_the_limit(database_url: str) -> None:
    with session_scope(database_url, write=True) as session:
        for minute in (3, 1, 4, 0, 2):
            run_summaries.start_run(
                session,
                kind="nightly",
                config_digest="c" * 64,
                now=NOW + timedelta(minutes=minute),
                run_id=uuid.UUID(int=minute + 1),
            )

    with session_scope(database_url) as session:
        assert [run.id.int - 1 for run in run_summaries.last_runs(session, limit=3)] == [4, 3, 2]
        assert len(run_summaries.last_runs(session)) == 5


# -- counts -----------------------------------------------------------------------------------------


def test_table_counts_name_every_table_and_start_at_zero(database_url: str) -> None:
    with session_scope(database_url) as session:
        assert run_summaries.table_counts(session) == dict.fromkeys(Base.metadata.tables, 0)


def test_table_counts_follow_the_writes(database_url: str) -> None:
    upsert(database_url, bar_frame(12))
    quarantine(database_url, ENTRIES)
    with session_scope(database_url, write=True) as session:
        run_summaries.start_run(session, kind="k", config_digest="c" * 64, now=NOW, run_id=uuid.UUID(int=3))

    with session_scope(database_url) as session:
        counts = run_summaries.table_counts(session)
        assert counts == {**dict.fromkeys(counts, 0), "bars": 12, "quarantined_rows": 2, "run_summaries": 1}
        assert session.scalar(select(RunSummary.kind)) == "k"
