"""Ingestion throughput: the real ingest task on a synthetic file, beside a plain pandas baseline.

Each case runs in a fresh process so that peak RSS is its own. Usage::

    python bench/ingest.py [--bars 1000000] [--symbols 10]

Prints one Markdown table (for docs/benchmarks.md) and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from processes import run_case


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_neuraltrade(path: str, workdir: str) -> dict[str, float]:
    """The ingest task: read, GE checks, quarantine, upsert; then the same file again (idempotent)."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from models.migrations import upgrade_database
    from tasks.ingest import ingest_file

    url = f"sqlite:///{workdir}/bench.db"
    upgrade_database(url)
    import tasks.quality  # noqa: F401  (import cost reported separately below)

    started = time.perf_counter()
    import great_expectations  # noqa: F401

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = ingest_file.fn(url, path)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = ingest_file.fn(url, path)
    second = time.perf_counter() - started
    assert report["rows_read"] == report["rows_stored"] + report["rows_quarantined"]
    assert again["rows_changed"] == 0
    return {
        "rows": report["rows_read"],
        "seconds": first,
        "reingest_seconds": second,
        "ge_import_seconds": import_seconds,
        "peak_rss_mib": _peak_rss_mib(),
    }


def case_stages(path: str, workdir: str) -> dict[str, float]:
    """The same work split by stage: parse, quality checks (warm), store."""
    from models import repositories
    from models.engine import session_scope
    from models.migrations import upgrade_database
    from neuraltrade.clock import SystemClock
    from neuraltrade.market.ingest import read_bars
    from tasks.ingest import split_by_quality
    from tasks.quality import check_bars

    url = f"sqlite:///{workdir}/stages.db"
    upgrade_database(url)
    parsed = read_bars(path)
    check_bars(parsed.frame.iloc[:1000, :8].reset_index(drop=True))  # warm GE up
    started = time.perf_counter()
    parsed = read_bars(path)
    parse = time.perf_counter() - started
    started = time.perf_counter()
    passing, _ = split_by_quality(parsed)
    quality = time.perf_counter() - started
    started = time.perf_counter()
    with session_scope(url, write=True) as session:
        repositories.upsert_bars(session, passing, source=path, now=SystemClock().now())
    store = time.perf_counter() - started
    return {"rows": parsed.rows_read, "parse_seconds": parse, "quality_seconds": quality, "store_seconds": store}


def case_pandas_to_sql(path: str, workdir: str) -> dict[str, float]:
    """Peer baseline: pandas.read_csv + DataFrame.to_sql into stdlib sqlite3, no checks, no upsert."""
    import sqlite3

    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path)
    with sqlite3.connect(f"{workdir}/pandas.db") as connection:
        frame.to_sql("bars", connection, index=False, chunksize=50_000)
    return {"rows": len(frame), "seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib()}


CASES = {"neuraltrade": case_neuraltrade, "stages": case_stages, "pandas_to_sql": case_pandas_to_sql}


def _run_case(name: str, path: str) -> dict[str, float]:
    return run_case(__file__, name, ["--path", path])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--path")
    parser.add_argument("--workdir")
    arguments = parser.parse_args()
    if arguments.case:
        print(json.dumps(CASES[arguments.case](arguments.path, arguments.workdir)))
        return

    from neuraltrade.market.synthetic import MarketConfig, generate_market, write_market_csv

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "market.csv")
        config = MarketConfig(symbols=arguments.symbols, bars_per_symbol=arguments.bars // arguments.symbols, seed=1)
        write_market_csv(generate_market(config), path, price_decimals=4)
        size_mib = Path(path).stat().st_size / 2**20
        results = {name: _run_case(name, path) for name in CASES}
    ours, stages, peer = results["neuraltrade"], results["stages"], results["pandas_to_sql"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"file: {ours['rows']:,} bars, {arguments.symbols} symbols, {size_mib:.0f} MiB CSV (long format)\n")
    print("| case | seconds | bars/s | peak RSS (MiB) |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| neuraltrade ingest (parse + GE checks + upsert) | {ours['seconds']:.2f} | "
        f"{ours['rows'] / ours['seconds']:,.0f} | {ours['peak_rss_mib']:,.0f} |"
    )
    print(
        f"| neuraltrade re-ingest of the same file (changes nothing) | {ours['reingest_seconds']:.2f} | "
        f"{ours['rows'] / ours['reingest_seconds']:,.0f} | |"
    )
    print(
        f"| pandas read_csv + to_sql (no checks, no upsert) | {peer['seconds']:.2f} | "
        f"{peer['rows'] / peer['seconds']:,.0f} | {peer['peak_rss_mib']:,.0f} |"
    )
    print(
        f"\nstages (warm): parse {stages['parse_seconds']:.2f} s, GE checks {stages['quality_seconds']:.2f} s, "
        f"upsert {stages['store_seconds']:.2f} s; first-call GE import {ours['ge_import_seconds']:.2f} s "
        "(paid once per process, before the first figure)"
    )


if __name__ == "__main__":
    main()
