"""Specification of the vector memory under concurrent processes (issue 3, point 6).

SQLite in WAL mode lets one writer in at a time while readers go on reading; on PostgreSQL each write
session holds an advisory lock. Four writer processes, each with its own `VectorDB` on the same database,
must all get their items in, none lost and no batch half-seen, while a reader process searches and
counts throughout without a single error.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from models.engine import session_scope
from models.tables import MemoryItemRecord
from models.vector_store import VectorDB
from neuraltrade.memory.collection import Filter, Query

WRITERS = 4
ITEMS_PER_WRITER = 10_000
BATCH = 500
DIMENSION = 24
COLLECTION = "shared"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
#: Seconds a process may wait at the barrier or for the others; far above what the test needs.
PATIENCE = 240


def writer_items(writer: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[datetime]]:
    """The items writer `writer` stores: its own ids, vectors from its own seed, every symbol."""
    keys = [f"writer-{writer}-item-{row}" for row in range(ITEMS_PER_WRITER)]
    vectors = np.random.default_rng(writer).normal(size=(ITEMS_PER_WRITER, DIMENSION)).astype(np.float32)
    metadata = [
        {"symbol": SYMBOLS[row % len(SYMBOLS)], "writer": writer, "row": row} for row in range(ITEMS_PER_WRITER)
    ]
    stamps = [START + timedelta(seconds=row, microseconds=writer) for row in range(ITEMS_PER_WRITER)]
    return keys, vectors, metadata, stamps


def write(database_url: str, writer: int, barrier: Any, reports: Any) -> None:
    """Child process: open a store of its own, wait for the others, insert every item in batches."""
    report: dict[str, Any] = {"role": "writer", "writer": writer, "batches": [], "error": None}
    try:
        db = VectorDB(DIMENSION, name=COLLECTION, database_url=database_url)
        keys, vectors, metadata, stamps = writer_items(writer)
        barrier.wait(PATIENCE)
        report["start"] = time.time()
        for start in range(0, ITEMS_PER_WRITER, BATCH):
            end = start + BATCH
            stored = db.insert_many(
                keys[start:end], vectors[start:end], metadata[start:end], timestamps=stamps[start:end]
            )
            report["batches"].append((time.time(), stored))
            # A pause between batches, as a real writer has: SQLite's busy handler sleeps a waiting writer
            # for up to 100 ms, so a writer that began again at once could take several turns in a row
            # and the writers would barely interleave (seen on 2 cores under a full test run).
            time.sleep(0.02)
        report["end"] = time.time()
    except BaseException:
        report["error"] = traceback.format_exc()
    reports.put(report)


def read(database_url: str, barrier: Any, writers_done: Any, reports: Any) -> None:
    """Child process: search and count in a loop until the writers are done, recording every anomaly."""
    report: dict[str, Any] = {"role": "reader", "reads": 0, "searches": 0, "counts": [], "errors": []}
    try:
        db = VectorDB.open(COLLECTION, database_url=database_url)
        rng = np.random.default_rng(99)
        barrier.wait(PATIENCE)
        last = 0
        while not writers_done.is_set():
            try:
                counted = db.count()
                report["reads"] += 1
                if counted % BATCH or counted < last:
                    report["errors"].append(f"count {counted} after {last}: a batch was seen in part or undone")
                last = counted
                report["counts"].append(counted)
                query = rng.normal(size=DIMENSION).astype(np.float32)
                for where in (None, Filter.eq("symbol", SYMBOLS[report["searches"] % len(SYMBOLS)])):
                    results = db.search(Query(query, k=10, where=where))
                    report["searches"] += 1
                    report["reads"] += 1
                    wanted = min(10, counted if where is None else counted // len(SYMBOLS))
                    if len(results) < wanted:
                        report["errors"].append(f"{len(results)} results with {counted} items stored ({where})")
                    distances = [result.distance for result in results]
                    if distances != sorted(distances):
                        report["errors"].append(f"unsorted results {distances}")
            except Exception:
                report["errors"].append(traceback.format_exc())
    except BaseException:
        report["errors"].append(traceback.format_exc())
    reports.put(report)


@pytest.fixture
def database_url(storage_url: str) -> str:
    """On SQLite (one writer at a time by its write lock) and on PostgreSQL (by the write session's
    advisory lock)."""
    return storage_url


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_writer_processes_and_a_reader_lose_nothing_and_see_no_error(database_url: str) -> None:
    VectorDB(DIMENSION, name=COLLECTION, database_url=database_url)  # the collection exists before anyone reads it
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS + 1)
    writers_done = context.Event()
    reports = context.Queue()
    processes = [
        context.Process(target=write, args=(database_url, writer, barrier, reports), name=f"writer-{writer}")
        for writer in range(WRITERS)
    ]
    processes.append(context.Process(target=read, args=(database_url, barrier, writers_done, reports), name="reader"))
    began = time.time()
    for process in processes:
        process.start()
    try:
        writer_reports: list[dict[str, Any]] = []
        reader_report: dict[str, Any] | None = None
        while len(writer_reports) < WRITERS:
            report = reports.get(timeout=PATIENCE)
            if report["role"] == "writer":
                writer_reports.append(report)
            else:
                reader_report = report  # the reader stopped early: its errors say why
        writers_done.set()
        if reader_report is None:
            reader_report = reports.get(timeout=PATIENCE)
    except queue.Empty:
        pytest.fail("a child process neither reported nor finished in time")
    finally:
        writers_done.set()
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [report["error"] for report in writer_reports] == [None] * WRITERS
    assert all(process.exitcode == 0 for process in processes)

    # The writers overlapped: each started before any finished, and their commits interleaved.
    first_end = min(report["end"] for report in writer_reports)
    assert max(report["start"] for report in writer_reports) < first_end
    commits = sorted((moment, report["writer"]) for report in writer_reports for moment, _ in report["batches"])
    switches = sum(1 for before, after in itertools.pairwise(commits) if before[1] != after[1])
    assert switches >= 2 * WRITERS, f"commits barely interleaved: {switches} switches between writers"
    assert all(stored == BATCH for report in writer_reports for _, stored in report["batches"])
    write_seconds = max(report["end"] for report in writer_reports) - min(report["start"] for report in writer_reports)

    # The reader read throughout and never saw an error, a half batch, or a count going back.
    assert reader_report["errors"] == []
    assert reader_report["reads"] > 0
    seen = sorted(set(reader_report["counts"]))
    print(
        f"\n{WRITERS} writers x {ITEMS_PER_WRITER} items in batches of {BATCH}: writes took {write_seconds:.1f} s "
        f"({WRITERS * ITEMS_PER_WRITER / write_seconds:,.0f} items/s), {switches} writer switches between commits; "
        f"reader: {reader_report['reads']} reads ({reader_report['searches']} searches), "
        f"{len(seen)} distinct counts from {seen[0]} to {seen[-1]}, 0 errors; "
        f"whole run {time.time() - began:.1f} s"
    )

    # Nothing was lost: every item in both tables, each retrievable with its vector.
    total = WRITERS * ITEMS_PER_WRITER
    db = VectorDB.open(COLLECTION, database_url=database_url)
    assert db.count() == total
    with session_scope(database_url) as session:
        assert session.execute(text(f"SELECT count(*) FROM vec_{COLLECTION}")).scalar_one() == total
        stored_keys = set(
            session.scalars(select(MemoryItemRecord.key).where(MemoryItemRecord.collection_id == db.collection_id))
        )
    expected_keys = {f"writer-{writer}-item-{row}" for writer in range(WRITERS) for row in range(ITEMS_PER_WRITER)}
    assert stored_keys == expected_keys
    rng = np.random.default_rng(5)
    for writer in range(WRITERS):
        keys, vectors, metadata, _ = writer_items(writer)
        for row in rng.choice(ITEMS_PER_WRITER, size=25, replace=False):
            item = db.get(keys[row])
            assert item is not None, keys[row]
            assert np.array_equal(item.vector, vectors[row])
            assert item.metadata == metadata[row]
        assert db.search(Query(vectors[123], k=1))[0].id == keys[123]
        assert db.count(Filter.eq("writer", writer)) == ITEMS_PER_WRITER
