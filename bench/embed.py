"""Embedding plus durable vector insert: the real embed task, beside what bounds it.

Cases, each in a fresh process so that peak RSS is its own:

- ``neuraltrade``: `tasks.embed.embed_symbol` for every symbol on two threads, as the flow runs it
  (read bars, embed, write observations, embeddings and sqlite-vec vectors, commit);
- ``embed_only``: the default embedder alone, no storage;
- ``sqlite_vec_raw``: the same number of 512-d vectors inserted through the vector backend alone (a
  sqlite-vec table of the same definition), grouped by symbol, one transaction: the store's own ceiling.

Usage::

    python bench/embed.py [--bars 200000] [--symbols 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from processes import run_case


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _market(symbols: int, bars: int):  # type: ignore[no-untyped-def]
    from neuraltrade.market.synthetic import MarketConfig, generate_market

    return generate_market(MarketConfig(symbols=symbols, bars_per_symbol=bars // symbols, seed=1))


def case_neuraltrade(symbols: int, bars: int, workdir: str) -> dict[str, float]:
    from models import repositories
    from models.engine import session_scope
    from models.migrations import upgrade_database
    from neuraltrade.clock import SystemClock
    from neuraltrade.memory.embedding import WindowEmbedderConfig
    from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE, SigningKey, write_key_file
    from tasks.embed import embed_symbol

    # Every stored record is signed (docs/provenance.md): a key of the run's own, as `neuraltrade init`
    # would make, unless one is named.
    if KEY_ENVIRONMENT_VARIABLE not in os.environ:
        key_path = Path(workdir) / "signing.key"
        write_key_file(key_path, SigningKey.generate())
        os.environ[KEY_ENVIRONMENT_VARIABLE] = str(key_path)
    url = f"sqlite:///{workdir}/bench.db"
    upgrade_database(url)
    frame = _market(symbols, bars)
    with session_scope(url, write=True) as session:
        repositories.upsert_bars(session, frame, source="bench", now=SystemClock().now())
    names = sorted(frame["symbol"].unique())
    del frame
    config = WindowEmbedderConfig()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda symbol: embed_symbol.fn(url, symbol, config), names))
    seconds = time.perf_counter() - started
    vectors = sum(result["embedded"] for result in results)
    database = Path(workdir) / "bench.db"
    # What stays on disk once the run is over: closing the last connection checkpoints the WAL into
    # the database and removes it, as the CLI's exit does.
    from models.engine import dispose_engines

    dispose_engines()
    return {
        "vectors": vectors,
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "disk_mib": sum(path.stat().st_size for path in database.parent.glob("bench.db*")) / 2**20,
    }


def case_embed_only(symbols: int, bars: int, workdir: str) -> dict[str, float]:
    from neuraltrade.memory.embedding import WindowEmbedder

    frame = _market(symbols, bars)
    embedder = WindowEmbedder()
    groups = [group for _, group in frame.groupby("symbol")]
    started = time.perf_counter()
    vectors = sum(len(embedder.embed(group)) for group in groups)
    return {"vectors": vectors, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}


def case_sqlite_vec_raw(symbols: int, bars: int, workdir: str) -> dict[str, float]:
    import numpy as np

    from models.dialects import vector_backend_for
    from models.engine import get_engine
    from neuraltrade.memory.collection import CollectionSpec
    from neuraltrade.memory.embedding import EmbedderFingerprint

    engine = get_engine(f"sqlite:///{workdir}/raw.db")
    backend = vector_backend_for(engine)
    spec = CollectionSpec(name="raw", fingerprint=EmbedderFingerprint(name="bench", version="1", dimension=512))
    generator = np.random.default_rng(1)
    per_symbol = bars // symbols
    with engine.begin() as connection:
        backend.create_collection(connection, spec)
    started = time.perf_counter()
    with engine.begin() as connection:
        for number in range(symbols):
            vectors = generator.standard_normal((per_symbol, 512), dtype=np.float32)
            ids = [number * per_symbol + row + 1 for row in range(per_symbol)]
            # No item rows here: each vector is keyed by its id, as if it were its item row's sequence.
            backend.insert(connection, spec, ids, [f"S{number:03d}"] * per_symbol, vectors, sequences=ids)
    return {"vectors": bars, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}


CASES = {
    "neuraltrade": case_neuraltrade,
    "embed_only": case_embed_only,
    "sqlite_vec_raw": case_sqlite_vec_raw,
}
LABELS = {
    "neuraltrade": "neuraltrade embed task (embed + observations + embeddings + sqlite-vec, 2 threads)",
    "embed_only": "default embedder alone (numpy, no storage)",
    "sqlite_vec_raw": "the vector backend's insert alone (sqlite-vec), 512-d float32, one transaction (the ceiling)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--workdir")
    arguments = parser.parse_args()
    if arguments.case:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        print(json.dumps(CASES[arguments.case](arguments.symbols, arguments.bars, arguments.workdir)))
        return
    options = ["--bars", str(arguments.bars), "--symbols", str(arguments.symbols)]
    results = {name: run_case(__file__, name, options) for name in CASES}
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data: {arguments.bars:,} synthetic bars, {arguments.symbols} symbols, 512-d vectors\n")
    print("| case | vectors | seconds | vectors/s | peak RSS (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, result in results.items():
        print(
            f"| {LABELS[name]} | {result['vectors']:,} | {result['seconds']:.2f} | "
            f"{result['vectors'] / result['seconds']:,.0f} | {result['peak_rss_mib']:,.0f} |"
        )
    print(f"\ndatabase on disk after the neuraltrade case: {results['neuraltrade']['disk_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
