"""Load: searcher processes and one writer against one collection, on SQLite and on PostgreSQL.

    python bench/load.py --database sqlite --seconds 60
    python bench/load.py --database postgresql --seconds 60     # starts a PostgreSQL of its own

Each searcher process opens the collection (HNSW, the store's own graphs) and searches random queries
(k=10, no filter) in a loop; the writer appends batches of new items, pauses between them as a night's
embedding does, and seals the graph every `--seal-every` items (the searchers take up the sealed file).
Printed: searches/s over all searchers, p50/p99 latency, errors (must be 0), and whether the final counts
are exact (the items preloaded plus every item the writer reported stored). On PostgreSQL, plain pgvector
(its HNSW index on the same table, ``ORDER BY embedding <=> q LIMIT 10``) is then swept over
``hnsw.ef_search`` for recall, and the same searchers and writer run against it at the smallest
``ef_search`` whose recall@10 reaches the store's (or pgvector's maximum, 1,000): a comparison at equal
recall.

Every process runs numpy's BLAS on `--blas-threads` threads (default 1, as in `bench/vectors.py`): nine
processes on two cores each waking a second BLAS thread for the unsealed segment's matrix-vector product
spend more on the hand-off than the product takes (one thread: 972 searches/s; OpenBLAS's default: 789).
docs/operations.md gives the same advice for a deployment of several searching processes.

Synthetic data: clustered unit vectors (`vectors` below: 64 centres, noise 0.6 per component, 128-d),
nothing outside the repository read. Not `bench.vectors.clustered_unit_vectors`: that is the 512-d hard set
with its noise scaled by the dimension, and every published load figure is of this set.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLLECTION = "load"
DIMENSION = 128
BATCH = 200
WRITER_PAUSE_SECONDS = 0.05
#: The writer seals its graph every this many items; the searchers take up the file.
SEAL_EVERY = 5_000
#: ef_search values of plain pgvector tried to match the store's recall.
PLAIN_EF_SWEEP = (40, 64, 100, 200, 400, 1000)
K = 10


def vectors(count: int, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    centres = generator.standard_normal((64, DIMENSION)).astype(np.float32)
    picks = generator.integers(0, len(centres), count)
    block = centres[picks] + generator.standard_normal((count, DIMENSION)).astype(np.float32) * 0.6
    return (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float32)


def preload(url: str, items: int) -> None:
    from models.vector_store import VectorDB

    # Written as an exact collection, then opened with its HNSW index: graphs (and pgvector's index)
    # are built once over the whole set instead of item by item.
    store = VectorDB(DIMENSION, name=COLLECTION, partition_key=None, database_url=url)
    data = vectors(items, seed=1)
    for start in range(0, items, 10_000):
        keys = [f"item-{row}" for row in range(start, min(items, start + 10_000))]
        store.insert_many(keys, data[start : start + len(keys)], [{} for _ in keys])
    store.close()
    graph = VectorDB.open(COLLECTION, database_url=url, index_type="hnsw")
    graph.rebuild_index()
    graph.close()


def search_loop(url: str, seconds: float, seed: int, plain: int, barrier: Any, results: Any) -> None:
    """Search until `seconds` have passed; `plain` is pgvector's ef_search for plain pgvector, 0 for the store."""
    report: dict[str, Any] = {"latencies": [], "errors": []}
    try:
        queries = vectors(2_000, seed=100 + seed)
        if plain:
            search = plain_pgvector(url, ef_search=plain)
        else:
            from models.vector_store import VectorDB
            from neuraltrade.memory.collection import Query

            store = VectorDB.open(COLLECTION, database_url=url, index_type="hnsw")

            def search(query: np.ndarray) -> list[Any]:
                return store.search(Query(query, k=K))

        barrier.wait(300)
        end = time.perf_counter() + seconds
        row = 0
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                found = search(queries[row % len(queries)])
                if len(found) != K:
                    report["errors"].append(f"{len(found)} results")
            except Exception:
                report["errors"].append(traceback.format_exc(limit=3))
            report["latencies"].append(time.perf_counter() - started)
            row += 1
        if not plain:
            store.close()
    except Exception:
        report["errors"].append(traceback.format_exc())
    results.put(report)


def plain_pgvector(url: str, ef_search: int = 64) -> Any:
    import psycopg
    from pgvector.psycopg import register_vector
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.query.get("host")
    connection = psycopg.connect(
        dbname=parsed.database, user=parsed.username, host=host if isinstance(host, str) else None, autocommit=True
    )
    register_vector(connection)
    connection.execute(f"SET hnsw.ef_search = {int(ef_search)}")

    def search(query: np.ndarray) -> list[Any]:
        return connection.execute(
            f"SELECT item_sequence FROM vec_{COLLECTION} ORDER BY embedding <=> %s LIMIT {K}", (query,)
        ).fetchall()

    return search


def write_loop(
    url: str, seconds: float, writer: tuple[int, float, int], plain_phase: int, barrier: Any, results: Any
) -> None:
    """Append batches; seal the graph every `seal_every` items (the one process that seals: searchers take
    up its graph file instead of each scanning and indexing the unsealed items)."""
    batch, pause, seal_every = writer
    report: dict[str, Any] = {"stored": 0, "errors": [], "seals": 0, "seal_seconds": 0.0}
    try:
        from models.vector_store import VectorDB

        store = VectorDB.open(COLLECTION, database_url=url, index_type="hnsw")
        data = vectors(200_000, seed=7)
        barrier.wait(300)
        end = time.perf_counter() + seconds
        row = unsealed = 0
        while time.perf_counter() < end and row + batch <= len(data):
            keys = [f"new-{plain_phase}-{row + offset}" for offset in range(batch)]
            try:
                report["stored"] += store.insert_many(keys, data[row : row + batch], [{} for _ in keys])
                unsealed += batch
                if seal_every and unsealed >= seal_every:
                    started = time.perf_counter()
                    store.seal()
                    report["seals"] += 1
                    report["seal_seconds"] += time.perf_counter() - started
                    unsealed = 0
            except Exception:
                report["errors"].append(traceback.format_exc(limit=3))
            row += batch
            time.sleep(pause)
    except Exception:
        report["errors"].append(traceback.format_exc())
    results.put(report)


def phase(
    url: str, searchers: int, seconds: float, *, plain: int, writer: tuple[int, float, int] | None
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(searchers + (1 if writer is not None else 0))
    results = context.Queue()
    processes = [
        context.Process(target=search_loop, args=(url, seconds, seed, plain, barrier, results))
        for seed in range(searchers)
    ]
    if writer is not None:
        arguments = (url, seconds, writer, plain, barrier, results)
        processes.append(context.Process(target=write_loop, args=arguments))
    for process in processes:
        process.start()
    reports = [results.get(timeout=seconds + 600) for _ in processes]
    for process in processes:
        process.join(60)
    latencies = np.array([value for report in reports for value in report.get("latencies", [])])
    errors = [error for report in reports for error in report["errors"]]
    stored = sum(report.get("stored", 0) for report in reports)
    seals = sum(report.get("seals", 0) for report in reports)
    seal_seconds = sum(report.get("seal_seconds", 0.0) for report in reports)
    return {
        "seals": seals,
        "mean_seal_seconds": round(seal_seconds / seals, 3) if seals else None,
        "searches_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3) if len(latencies) else None,
        "errors": len(errors),
        "first_error": errors[0][-500:] if errors else None,
        "written": stored,
    }


def recall(url: str, plain: int, queries: int = 200) -> float:
    from models.vector_store import VectorDB
    from neuraltrade.memory.collection import Query

    store = VectorDB.open(COLLECTION, database_url=url, index_type="hnsw")
    sample = vectors(queries, seed=999)
    search = plain_pgvector(url, ef_search=plain) if plain else None
    hits = 0
    for query in sample:
        exact = {result.id for result in store.search(Query(query, k=K, exact=True))}
        if plain:
            assert search is not None
            sequences = [row[0] for row in search(query)]
            found = _keys_of(url, sequences)
        else:
            found = {result.id for result in store.search(Query(query, k=K))}
        hits += len(exact & found)
    return round(hits / (queries * K), 4)


def _keys_of(url: str, sequences: list[int]) -> set[str]:
    from sqlalchemy import select

    from models.engine import session_scope
    from models.tables import MemoryItemRecord

    with session_scope(url) as session:
        return set(session.scalars(select(MemoryItemRecord.key).where(MemoryItemRecord.sequence.in_(sequences))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--searchers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writer-batch", type=int, default=BATCH, help="Items per write.")
    parser.add_argument("--writer-pause", type=float, default=WRITER_PAUSE_SECONDS, help="Seconds between writes.")
    parser.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads of every process (0: the library's default)."
    )
    parser.add_argument(
        "--seal-every", type=int, default=SEAL_EVERY, help="Items between the writer's seals (0: never)."
    )
    arguments = parser.parse_args()
    if arguments.blas_threads:
        # Read by numpy's BLAS when a spawned process imports it.
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(arguments.blas_threads)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="neuraltrade-load-")))
        if arguments.database == "sqlite":
            url = f"sqlite:///{folder}/load.db"
        else:
            from tests.postgresql import fresh_database, running_server

            server = stack.enter_context(running_server())
            url = stack.enter_context(fresh_database(server))
            os.environ["NEURALTRADE_INDEX_DIR"] = str(folder / "indexes")
        from models.migrations import upgrade_database

        upgrade_database(url)
        started = time.perf_counter()
        preload(url, arguments.items)
        result: dict[str, Any] = {
            "database": arguments.database,
            "items": arguments.items,
            "dimension": DIMENSION,
            "searchers": arguments.searchers,
            "seconds": arguments.seconds,
            "preload_seconds": round(time.perf_counter() - started, 1),
            "cores": os.cpu_count(),
            "blas_threads": arguments.blas_threads or "library default",
        }
        writer = (arguments.writer_batch, arguments.writer_pause, arguments.seal_every)
        result["writer"] = {
            "batch": arguments.writer_batch,
            "pause_seconds": arguments.writer_pause,
            "seal_every": arguments.seal_every,
        }
        result["store"] = phase(url, arguments.searchers, arguments.seconds, plain=0, writer=writer)
        from models.vector_store import VectorDB

        counted = VectorDB.open(COLLECTION, database_url=url).count()
        result["store"]["final_count"] = counted
        result["store"]["counts_exact"] = counted == arguments.items + result["store"]["written"]
        result["store"]["recall_at_10"] = recall(url, plain=0)
        if arguments.database == "postgresql":
            # At equal recall: the smallest ef_search whose recall reaches the store's (pgvector allows 1,000).
            sweep = {ef: recall(url, plain=ef) for ef in PLAIN_EF_SWEEP}
            result["plain_pgvector_recall_by_ef"] = sweep
            matched = next((ef for ef, found in sweep.items() if found >= result["store"]["recall_at_10"]), None)
            chosen = matched or PLAIN_EF_SWEEP[-1]
            result["plain_pgvector"] = phase(url, arguments.searchers, arguments.seconds, plain=chosen, writer=writer)
            result["plain_pgvector"].update(ef_search=chosen, recall_reached=matched is not None)
            result["plain_pgvector"]["recall_at_10"] = recall(url, plain=chosen)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
