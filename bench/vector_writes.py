"""Durable writes of the vector store: new items, and a re-run that replaces every one of them.

For each quantization, a fresh migrated SQLite file, one partitioned collection (50 symbols, 512-d
float32 random vectors, fixed timestamps) and three passes through the public API in committed batches
of 10,000:

- ``insert_many`` of new items;
- ``upsert_many`` of the same ids with new vectors and the same timestamps and metadata (what a re-run
  after a crash writes): each item stays in its partition, so it is replaced in place
  (`models.item_writes`);
- ``upsert_many`` of the same ids with the same vectors but new timestamps (the time index changes).

Each quantization runs in its own process. The vector backend and its disk are the bound (see
`bench/vectors.py` for the comparison with Chroma and LanceDB, whose inserts this repeats).

Usage::

    python bench/vector_writes.py [--count 100000] [--quantizations none int8 binary]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from processes import run_case

BATCH = 10_000
SYMBOLS = 50
DIMENSION = 512
QUANTIZATIONS = ("none", "int8", "binary")


def measure(quantization: str, count: int, workdir: str) -> dict[str, float]:
    """Return vectors/s of each pass over `count` items of one collection of `quantization`."""
    import numpy as np

    from models.migrations import upgrade_database
    from models.vector_store import VectorDB

    url = f"sqlite:///{workdir}/writes.db"
    upgrade_database(url)
    store = VectorDB(DIMENSION, name="writes", quantization=quantization, partition_key="symbol", database_url=url)
    generator = np.random.default_rng(3)
    batches = []
    for start in range(0, count, BATCH):
        rows = range(start, min(start + BATCH, count))
        batches.append(
            (
                [f"item-{row}" for row in rows],
                generator.standard_normal((len(rows), DIMENSION), dtype=np.float32),
                [{"symbol": f"S{row % SYMBOLS:02d}"} for row in rows],
                list(rows),
            )
        )
    rates: dict[str, float] = {}
    passes = {
        "insert": lambda keys, vectors, metadata, stamps: store.insert_many(keys, vectors, metadata, timestamps=stamps),
        "upsert_replacing": lambda keys, vectors, metadata, stamps: store.upsert_many(
            keys, vectors * 2, metadata, timestamps=stamps
        ),
        "upsert_replacing_new_timestamps": lambda keys, vectors, metadata, stamps: store.upsert_many(
            keys, vectors * 2, metadata, timestamps=[stamp + 1 for stamp in stamps]
        ),
    }
    for name, write in passes.items():
        started = time.perf_counter()
        for keys, vectors, metadata, stamps in batches:
            write(keys, vectors, metadata, stamps)
        rates[name] = count / (time.perf_counter() - started)
    if store.count() != count:
        raise RuntimeError(f"{store.count():,} items stored after the passes, expected {count:,}")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--quantizations", nargs="+", choices=QUANTIZATIONS, default=list(QUANTIZATIONS))
    parser.add_argument("--case", choices=QUANTIZATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.case:
        print(json.dumps(measure(arguments.case, arguments.count, arguments.workdir)))
        return
    results = {name: run_case(__file__, name, ["--count", str(arguments.count)]) for name in arguments.quantizations}
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{arguments.count:,} x {DIMENSION} float32 over {SYMBOLS} symbols, committed batches of {BATCH:,}\n")
    print("| quantization | insert_many (vectors/s) | upsert_many, replacing (vectors/s) | ... with new timestamps |")
    print("| --- | ---: | ---: | ---: |")
    for quantization, rates in results.items():
        print(
            f"| {quantization} | {rates['insert']:,.0f} | {rates['upsert_replacing']:,.0f} | "
            f"{rates['upsert_replacing_new_timestamps']:,.0f} |"
        )


if __name__ == "__main__":
    main()
