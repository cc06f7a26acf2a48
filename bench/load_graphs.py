"""The load set's graph search, one process, by library: is there a graph library that would lift the load
ceiling at the same recall?

    python bench/load_graphs.py            # needs the bench extra (faiss-cpu, usearch)

Builds hnswlib (the store's), faiss `IndexHNSWFlat` and usearch over `bench/load.py`'s 100,000 x 128 set
with the store's graph parameters (M 16, ef_construction 200), then times single queries (k=10, one
thread) at each search breadth and measures recall@10 against exact cosine neighbours of 300 queries.
Printed as one JSON line per library and breadth.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import DIMENSION, K, vectors

from models.ann_index import HnswConfig

ITEMS = 100_000
BREADTHS = (32, 64, 128, 256)
#: The store's own graph parameters, so that every library builds the graph the store would.
M = HnswConfig().m
EF_CONSTRUCTION = HnswConfig().ef_construction


def hnswlib_search(data: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=DIMENSION)
    index.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION, random_seed=100)
    index.add_items(data, np.arange(len(data)), num_threads=2)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.set_ef(ef)
        return np.asarray(index.knn_query(query, k=K, num_threads=1)[0][0])

    return search


def faiss_search(data: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(2)
    # Unit vectors: the inner product orders as cosine does.
    index = faiss.IndexHNSWFlat(DIMENSION, M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(data)
    faiss.omp_set_num_threads(1)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.hnsw.efSearch = ef
        return np.asarray(index.search(query[None], K)[1][0])

    return search


def usearch_search(data: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    from usearch.index import Index

    index = Index(ndim=DIMENSION, metric="cos", dtype="f32", connectivity=M, expansion_add=EF_CONSTRUCTION)
    index.add(np.arange(len(data)), data, threads=2)

    def search(query: np.ndarray, ef: int) -> np.ndarray:
        index.expansion_search = ef
        return np.asarray(index.search(query, K, threads=1).keys)

    return search


LIBRARIES = {"hnswlib": hnswlib_search, "faiss": faiss_search, "usearch": usearch_search}


def main() -> None:
    data = vectors(ITEMS, seed=1)
    queries = vectors(2_000, seed=5)
    sample = queries[:300]
    exact = np.argsort(-(sample @ data.T), axis=1)[:, :K]
    for name, build in LIBRARIES.items():
        started = time.perf_counter()
        search = build(data)
        built = time.perf_counter() - started
        for ef in BREADTHS:
            started = time.perf_counter()
            for query in queries:
                search(query, ef)
            per_query = (time.perf_counter() - started) / len(queries)
            pairs = zip(sample, exact, strict=True)
            hits = sum(len(set(search(query, ef).tolist()) & set(row.tolist())) for query, row in pairs)
            record = {
                "library": name,
                "ef": ef,
                "ms_per_search": round(per_query * 1000, 3),
                "recall_at_10": round(hits / (len(sample) * K), 3),
                "build_seconds": round(built, 1),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
