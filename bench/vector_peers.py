"""The peers that `bench/vectors.py` measures the store against, one function per contender.

Each function runs in its own process (`vectors.py` re-invokes itself with ``--contender``), fills its
peer from the workload's memory-mapped matrix and returns one record (`vectors.result_record`). The
datasets, the measurements and the report live in `vectors.py`; see its docstring for what is compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from vectors import (
    BUILD_THREADS,
    DIMENSION,
    EF_SWEEP,
    FILTER_EF,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    INSERT_ROWS,
    NEIGHBOURS,
    READ_ROWS,
    Workload,
    grouped_sizes,
    log,
    measure_queries,
    peak_rss_mib,
    result_record,
    start_search_phase,
)

#: Chroma's HNSW segment flushes its graph files every this many records (its default, stated for the record).
CHROMA_SYNC_THRESHOLD = 1_000


def contender_numpy(workload: Workload, workdir: Path) -> dict[str, Any]:
    """Brute force over the memory-mapped matrix: its pages stay resident, as an in-RAM array would."""
    matrix = workload.vectors.matrix
    started = time.perf_counter()
    matrix.sum(dtype=np.float64)  # nothing to build: fault every page in, as loading an array would
    load_seconds = time.perf_counter() - started
    build_peak, _ = start_search_phase()

    def top_rows(query: np.ndarray, rows: np.ndarray, first_row: int) -> np.ndarray:
        scores = rows @ query
        take = min(NEIGHBOURS, len(scores))
        best = np.argpartition(-scores, take - 1)[:take]
        return best[np.argsort(-scores[best], kind="stable")] + first_row

    configs = [measure_queries(lambda number: top_rows(workload.queries[number], matrix, 0), workload.truth, "exact")]
    if workload.symbol_truth is not None:
        offsets = workload.manifest.offsets
        query_symbols = workload.manifest.query_symbols

        def per_symbol(number: int) -> np.ndarray:
            symbol = query_symbols[number]
            start, stop = offsets[symbol], offsets[symbol + 1]
            return top_rows(workload.queries[number], matrix[start:stop], start)

        configs.append(measure_queries(per_symbol, workload.symbol_truth, "exact, per-symbol slice", True))
    return result_record(
        "numpy",
        vectors=len(matrix),
        build_seconds=None,
        configs=configs,
        disk_mib=0.0,
        build_peak_mib=build_peak,
        search_peak_mib=peak_rss_mib(),
        extra={"load_seconds": load_seconds},
    )


def contender_faiss_flat(workload: Workload, workdir: Path) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(BUILD_THREADS)
    index = faiss.IndexFlatIP(DIMENSION)
    build_seconds = 0.0
    for _, batch in workload.vectors.batches(READ_ROWS):
        started = time.perf_counter()
        index.add(batch)
        build_seconds += time.perf_counter() - started
    build_peak, _ = start_search_phase()
    faiss.omp_set_num_threads(1)

    def search(number: int) -> np.ndarray:
        _, rows = index.search(workload.queries[number].reshape(1, -1), NEIGHBOURS)
        return np.asarray(rows[0])

    configs = [measure_queries(search, workload.truth, "exact")]
    return result_record(
        "faiss_flat",
        vectors=len(workload.vectors),
        build_seconds=build_seconds,
        configs=configs,
        disk_mib=0.0,
        build_peak_mib=build_peak,
        search_peak_mib=peak_rss_mib(),
    )


def contender_hnswlib(workload: Workload, workdir: Path, *, subspace: bool = False) -> dict[str, Any]:
    """hnswlib over the vectors, or (`subspace`) over their coordinates in the exact span the store's graph
    finds (`neuraltrade.memory.subspace`, from the first batch): the raw library on the store's graph.
    A query's projection is part of its measured time."""
    import hnswlib

    from neuraltrade.memory.subspace import Subspace

    count = len(workload.vectors)
    name = "hnswlib_subspace" if subspace else "hnswlib"
    span: Subspace | None = None
    index: Any = None
    build_seconds = 0.0
    for start, batch in workload.vectors.batches(READ_ROWS):
        started = time.perf_counter()
        if index is None:
            span = Subspace.find(batch) if subspace else None
            if subspace and span is None:
                raise SystemExit(f"{name}: the vectors span no subspace worth searching in")
            index = hnswlib.Index(space="ip", dim=DIMENSION if span is None else span.rows)
            index.init_index(max_elements=count, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=100)
        rows = batch if span is None else span.project(batch)
        index.add_items(rows, np.arange(start, start + len(batch)), num_threads=BUILD_THREADS)
        build_seconds += time.perf_counter() - started
        log(f"  {name}: {start + len(batch):,} of {count:,} added ({build_seconds:.0f} s)")
    path = workdir / "hnswlib.bin"
    index.save_index(str(path))
    build_peak, _ = start_search_phase()
    queries: np.ndarray = np.asarray(workload.queries, dtype=np.float32)
    configs = []
    for ef in EF_SWEEP:
        index.set_ef(ef)

        def search(number: int) -> np.ndarray:
            query = queries[number] if span is None else span.project(queries[number : number + 1])
            rows, _ = index.knn_query(query, k=NEIGHBOURS, num_threads=1)
            return np.asarray(rows[0])

        configs.append(measure_queries(search, workload.truth, f"ef={ef}") | {"ef": ef})
    return result_record(
        name,
        vectors=count,
        build_seconds=build_seconds,
        configs=configs,
        disk_mib=path.stat().st_size / 2**20,
        build_peak_mib=build_peak,
        search_peak_mib=peak_rss_mib(),
        extra={} if span is None else {"subspace_rank": span.rank, "subspace_rows": span.rows},
    )


def contender_usearch(workload: Workload, workdir: Path) -> dict[str, Any]:
    from usearch.index import Index

    count = len(workload.vectors)
    # Any: usearch's annotations miss the expansion_search setter, and mypy may run without usearch.
    index: Any = Index(
        ndim=DIMENSION, metric="ip", dtype="f32", connectivity=HNSW_M, expansion_add=HNSW_EF_CONSTRUCTION
    )
    build_seconds = 0.0
    for start, batch in workload.vectors.batches(READ_ROWS):
        started = time.perf_counter()
        index.add(np.arange(start, start + len(batch), dtype=np.uint64), batch, threads=BUILD_THREADS)
        build_seconds += time.perf_counter() - started
        log(f"  usearch: {start + len(batch):,} of {count:,} added ({build_seconds:.0f} s)")
    path = workdir / "usearch.bin"
    index.save(str(path))
    build_peak, _ = start_search_phase()
    configs = []
    for ef in EF_SWEEP:
        index.expansion_search = ef

        def search(number: int) -> np.ndarray:
            return np.asarray(index.search(workload.queries[number], NEIGHBOURS, threads=1).keys)

        configs.append(measure_queries(search, workload.truth, f"ef={ef}") | {"ef": ef})
    return result_record(
        "usearch",
        vectors=count,
        build_seconds=build_seconds,
        configs=configs,
        disk_mib=path.stat().st_size / 2**20,
        build_peak_mib=build_peak,
        search_peak_mib=peak_rss_mib(),
    )


def symbol_metadata(workload: Workload, symbol_of_rows: np.ndarray | None, first: int, rows: int) -> list[str] | None:
    """The symbols of stored rows ``first:first + rows`` (None for a dataset without symbols)."""
    if symbol_of_rows is None:
        return None
    return [workload.manifest.symbols[index] for index in symbol_of_rows[first : first + rows]]


def contender_chroma(workload: Workload, workdir: Path) -> dict[str, Any]:
    """Chroma's embedded PersistentClient: HNSW collection, adds of at most the client's max batch size.

    The ef of an open collection cannot be changed: `modify(configuration=...)` stores the new
    ``ef_search`` but the loaded HNSW segment keeps searching with the old one until the client's system
    is rebuilt (checked with chromadb 1.5.9). So every sweep point stores its ef, drops the client
    (`clear_system_cache`) and opens a new one, whose first queries (the warm-up) load the segment again.
    """
    import chromadb
    from chromadb.config import Settings

    folder = workdir / "chroma"
    settings = Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=str(folder), settings=settings)
    max_batch = client.get_max_batch_size()
    collection = client.create_collection(
        "bench",
        configuration={
            "hnsw": {
                "space": "cosine",
                "max_neighbors": HNSW_M,
                "ef_construction": HNSW_EF_CONSTRUCTION,
                "ef_search": EF_SWEEP[0],
                "num_threads": BUILD_THREADS,
                "sync_threshold": CHROMA_SYNC_THRESHOLD,
            }
        },
        embedding_function=None,
    )
    symbol_of_rows = workload.manifest.symbol_of_rows() if workload.manifest.has_symbols else None
    count = len(workload.vectors)
    insert_seconds = 0.0
    for start, batch in workload.vectors.batches(READ_ROWS):
        for offset in range(0, len(batch), INSERT_ROWS):
            first = start + offset
            part = batch[offset : offset + INSERT_ROWS]
            ids = [str(row) for row in range(first, first + len(part))]
            symbols = symbol_metadata(workload, symbol_of_rows, first, len(part))
            metadatas: Any = None if symbols is None else [{"symbol": symbol} for symbol in symbols]
            started = time.perf_counter()
            for low in range(0, len(part), max_batch):
                high = low + max_batch
                collection.add(
                    ids=ids[low:high],
                    embeddings=part[low:high],
                    metadatas=None if metadatas is None else metadatas[low:high],
                )
            insert_seconds += time.perf_counter() - started
        log(f"  chroma: {start + len(batch):,} of {count:,} added ({insert_seconds:.0f} s)")
    stored = collection.count()
    if stored != count:
        raise SystemExit(f"chroma: the collection holds {stored:,} vectors, {count:,} were added")
    build_peak, _ = start_search_phase()
    configs: list[dict[str, Any]] = []
    filtered: list[dict[str, Any]] = []
    for ef in EF_SWEEP:
        collection.modify(configuration={"hnsw": {"ef_search": ef}})
        client.clear_system_cache()
        client = chromadb.PersistentClient(path=str(folder), settings=settings)
        collection = client.get_collection("bench")

        def search(number: int, collection: Any = collection, where: dict[str, str] | None = None) -> list[int]:
            found = collection.query(
                query_embeddings=workload.queries[number].reshape(1, -1), n_results=NEIGHBOURS, where=where, include=[]
            )
            return [int(row) for row in found["ids"][0]]

        configs.append(measure_queries(search, workload.truth, f"ef={ef}") | {"ef": ef})
        if ef == FILTER_EF and workload.symbol_truth is not None:

            def per_symbol(number: int, search: Callable[..., list[int]] = search) -> list[int]:
                return search(number, where={"symbol": workload.query_symbol(number)})

            label = f"ef={ef}, per-symbol filter"
            filtered.append(measure_queries(per_symbol, workload.symbol_truth, label, True))
    search_peak = peak_rss_mib()
    client.clear_system_cache()
    disk_files = grouped_sizes(folder, lambda name: name if "/" not in name else "HNSW segment files")
    return result_record(
        "chroma",
        vectors=count,
        build_seconds=insert_seconds,
        configs=configs + filtered,
        disk_mib=sum(disk_files.values()),
        build_peak_mib=build_peak,
        search_peak_mib=search_peak,
        extra={
            "disk_files_mib": disk_files,
            "insert_seconds": insert_seconds,
            "insert_vectors_per_second": count / insert_seconds,
            "index_seconds": 0.0,
            "insert_batch": INSERT_ROWS,
            "client_batch": max_batch,
        },
    )


def contender_lancedb(workload: Workload, workdir: Path) -> dict[str, Any]:
    """LanceDB embedded: adds of 10,000 rows, an IVF_HNSW_SQ index, exact (flat scan) and indexed search.

    IVF_HNSW_SQ is what LanceDB's index guide names for the best recall/latency trade-off; one IVF
    partition, as its `HnswSq` docstring recommends for most tables, so the sweep is over ef alone
    (nprobes 1 covers every row). The exact figures bypass the index (`bypass_vector_index`, the flat
    scan a table without one does). On the real dataset a bitmap index on ``symbol`` serves the filters.
    """
    import lancedb
    import pyarrow as pa
    from lancedb.index import Bitmap, HnswSq

    folder = workdir / "lancedb"
    database = lancedb.connect(str(folder))
    has_symbols = workload.manifest.has_symbols
    fields = [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), DIMENSION))]
    if has_symbols:
        fields.insert(1, pa.field("symbol", pa.string()))
    schema = pa.schema(fields)
    table = database.create_table("bench", schema=schema)
    symbol_of_rows = workload.manifest.symbol_of_rows() if has_symbols else None
    count = len(workload.vectors)
    insert_seconds = 0.0
    for start, batch in workload.vectors.batches(READ_ROWS):
        for offset in range(0, len(batch), INSERT_ROWS):
            first = start + offset
            part = batch[offset : offset + INSERT_ROWS]
            columns: dict[str, Any] = {
                "id": pa.array(np.arange(first, first + len(part), dtype=np.int64)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), DIMENSION),
            }
            symbols = symbol_metadata(workload, symbol_of_rows, first, len(part))
            if symbols is not None:
                columns["symbol"] = pa.array(symbols, pa.string())
            rows = pa.table(columns, schema=schema)
            started = time.perf_counter()
            table.add(rows)
            insert_seconds += time.perf_counter() - started
        log(f"  lancedb: {start + len(batch):,} of {count:,} added ({insert_seconds:.0f} s)")
    stored = table.count_rows()
    if stored != count:
        raise SystemExit(f"lancedb: the table holds {stored:,} rows, {count:,} were added")
    index_seconds = 0.0
    if has_symbols:
        started = time.perf_counter()
        table.create_index("symbol", config=Bitmap())
        index_seconds += time.perf_counter() - started
    started = time.perf_counter()
    table.create_index(
        "vector",
        config=HnswSq(distance_type="cosine", num_partitions=1, m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION),
    )
    table.wait_for_index(["vector_idx"])
    ann_seconds = time.perf_counter() - started
    index_seconds += ann_seconds
    log(f"  lancedb: IVF_HNSW_SQ index built in {ann_seconds:.0f} s")
    build_peak, _ = start_search_phase()

    def search(number: int, ef: int | None, filtered: bool) -> list[int]:
        # Any: `search` is typed as the generic query builder, the vector one's methods are missing from it.
        query: Any = table.search(workload.queries[number])
        query = query.distance_type("cosine").limit(NEIGHBOURS)
        query = query.bypass_vector_index() if ef is None else query.nprobes(1).ef(ef)
        if filtered:
            symbol = workload.query_symbol(number).replace("'", "''")
            query = query.where(f"symbol = '{symbol}'")
        # _distance selected too: leaving it out draws a deprecation warning from lance on every query.
        return query.select(["id", "_distance"]).to_arrow()["id"].to_pylist()

    configs = []
    for ef in (None, *EF_SWEEP):
        label = "exact (flat scan)" if ef is None else f"IVF_HNSW_SQ ef={ef}"
        point = measure_queries(partial(search, ef=ef, filtered=False), workload.truth, label)
        configs.append(point if ef is None else point | {"ef": ef, "curve": "IVF_HNSW_SQ"})
    if workload.symbol_truth is not None:
        for ef in (None, FILTER_EF):
            label = "exact, per-symbol filter" if ef is None else f"IVF_HNSW_SQ ef={ef}, per-symbol filter"
            configs.append(measure_queries(partial(search, ef=ef, filtered=True), workload.symbol_truth, label, True))
    search_peak = peak_rss_mib()
    versions = table.version
    disk_files = grouped_sizes(folder, lambda name: name.split("/")[1] if name.count("/") >= 2 else name)
    return result_record(
        "lancedb",
        vectors=count,
        build_seconds=insert_seconds + index_seconds,
        configs=configs,
        disk_mib=sum(disk_files.values()),
        build_peak_mib=build_peak,
        search_peak_mib=search_peak,
        extra={
            "disk_files_mib": disk_files,
            "insert_seconds": insert_seconds,
            "insert_vectors_per_second": count / insert_seconds,
            "index_seconds": index_seconds,
            "ann_index_seconds": ann_seconds,
            "insert_batch": INSERT_ROWS,
            "table_versions": versions,
        },
    )


PEERS: dict[str, Callable[[Workload, Path], dict[str, Any]]] = {
    "numpy": contender_numpy,
    "faiss_flat": contender_faiss_flat,
    "hnswlib": contender_hnswlib,
    "hnswlib_subspace": partial(contender_hnswlib, subspace=True),
    "usearch": contender_usearch,
    "chroma": contender_chroma,
    "lancedb": contender_lancedb,
}
