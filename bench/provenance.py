"""Provenance figures: records signed per second, verify time, proof sizes and times.

    python bench/provenance.py --sizes 100000 1000000

For each size: a fresh SQLite database in a temporary folder receives that many trial records (a small
record: a variant and five daily returns) through the store's own write path (`models.learning_store.
save_trials`, which inserts, signs and logs them in one transaction, 10,000 per transaction); the log is
sealed with a checkpoint; `verify` runs over it. Pure Ed25519 signing (no database) is timed on the same
records, and inclusion and consistency proofs (pymerkle, RFC 6962) are made and checked on the log's leaves.
Results go to bench/results/provenance.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuraltrade.canonical import stable_id
from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE, SigningKey, write_key_file
from neuraltrade.research.trials import Trial

BATCH = 10_000
PROOFS = 1_000


def _trials(start: int, count: int) -> list[Trial]:

    return [
        Trial(
            id=stable_id("bench-trial", number),
            family="bench",
            variant=f"v{number}",
            strategy="momentum",
            parameters={"lookback": number % 50},
            symbols=("NVDA",),
            timestamps=tuple(1_700_000_000_000_000 + day * 86_400_000_000 for day in range(5)),
            returns=tuple(((number * 7 + day) % 11 - 5) / 1000 for day in range(5)),
        )
        for number in range(start, start + count)
    ]


def measure(size: int, folder: Path) -> dict[str, float | int]:
    from sqlalchemy import select

    from models.engine import dispose_engines, session_scope
    from models.learning_store import save_trials
    from models.migrations import upgrade_database
    from models.provenance import LogEntryRecord
    from neuraltrade.provenance.keys import load_signing_key
    from neuraltrade.provenance.log import LeafTree, proof_size, proves_consistency, proves_leaf_inclusion
    from tasks.provenance import seal_log, verify_with

    url = f"sqlite:///{folder}/bench-{size}.db"
    upgrade_database(url)
    key = load_signing_key()
    sample = _trials(0, min(size, 20_000))
    started = time.perf_counter()
    for record in sample:
        key.sign(record.canonical_bytes())
    signing_only = len(sample) / (time.perf_counter() - started)

    started = time.perf_counter()
    for start in range(0, size, BATCH):
        with session_scope(url, write=True) as session:
            save_trials(session, _trials(start, min(BATCH, size - start)))
    stored = time.perf_counter() - started
    seal_log.fn(url, str(folder / f"checkpoints-{size}"))
    dispose_engines()

    started = time.perf_counter()
    report = verify_with(url, directory=str(folder / f"checkpoints-{size}"))
    verify_seconds = time.perf_counter() - started
    assert report.ok, report.summary()

    with session_scope(url) as session:
        leaves = [
            bytes(leaf) for leaf in session.scalars(select(LogEntryRecord.leaf_hash).order_by(LogEntryRecord.position))
        ]
    tree = LeafTree(leaves)
    started = time.perf_counter()
    root = tree.root()
    root_seconds = time.perf_counter() - started
    step = max(1, len(leaves) // PROOFS)
    positions = list(range(0, len(leaves), step))[:PROOFS]
    made, checked, sizes = [], [], []
    for position in positions:
        begin = time.perf_counter()
        proof = tree.inclusion_proof(position)
        middle = time.perf_counter()
        assert proves_leaf_inclusion(leaves[position], root, proof)
        made.append(middle - begin)
        checked.append(time.perf_counter() - middle)
        sizes.append(proof_size(proof))
    prior = len(leaves) // 2 + 1
    begin = time.perf_counter()
    consistency = tree.consistency_proof(prior)
    consistency_made = time.perf_counter() - begin
    begin = time.perf_counter()
    assert proves_consistency(tree.root(prior), root, consistency)
    consistency_checked = time.perf_counter() - begin
    return {
        "entries": len(leaves),
        "signing_only_per_second": round(signing_only),
        "stored_signed_logged_per_second": round(size / stored),
        "verify_seconds": round(verify_seconds, 2),
        "verify_entries_per_second": round(len(leaves) / verify_seconds),
        "root_seconds": round(root_seconds, 3),
        "inclusion_proof_bytes_median": int(statistics.median(sizes)),
        "inclusion_prove_ms_median": round(1000 * statistics.median(made), 3),
        "inclusion_check_ms_median": round(1000 * statistics.median(checked), 3),
        "consistency_proof_bytes": proof_size(consistency),
        "consistency_prove_ms": round(1000 * consistency_made, 3),
        "consistency_check_ms": round(1000 * consistency_checked, 3),
        "database_bytes": os.path.getsize(f"{folder}/bench-{size}.db"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results") / "provenance.json")
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="neuraltrade-provenance-bench-"))
    os.environ[KEY_ENVIRONMENT_VARIABLE] = str(folder / "signing.key")
    write_key_file(folder / "signing.key", SigningKey.generate())
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    for size in arguments.sizes:
        results[str(size)] = measure(size, folder)
        print(size, json.dumps(results[str(size)]), flush=True)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
