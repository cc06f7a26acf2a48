"""Write `revision_0003.db.gz`: a database as neuraltrade stored it at schema revision 0003 (commit f881633).

Run with that commit's code first on the path, against any environment that has its dependencies::

    git worktree add /tmp/prev f881633
    PYTHONPATH=/tmp/prev .venv/bin/python tests/data/previous_schema/make_database.py
    git worktree remove /tmp/prev

It ingests the last 600 daily bars of the shipped NVDA file, embeds them into the market-state memory
(16 dimensions instead of 512, to keep the file small) and stores a `memory_vote` run (signals linking
observations and recalled memory items) and a `neural` run (signals linking model versions, with the
model version stored), each with risk limits tight enough to reject some orders. Not a test: the
migration tests read the file it writes.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

BARS = 600
DIMENSION = 16
OUTPUT = Path(__file__).with_name("revision_0003.db.gz")


def main() -> None:
    import neuraltrade
    from models.engine import dispose_engines
    from models.migrations import current_revision, upgrade_database
    from neuraltrade.backtest import BacktestConfig
    from neuraltrade.clock import FixedClock
    from neuraltrade.memory.embedding import WindowEmbedderConfig
    from neuraltrade.sample_data import sample_paths
    from neuraltrade.trading.risk import RiskLimits
    from tasks import backtest, embed, ingest

    print(f"neuraltrade from {Path(neuraltrade.__file__).parent}", file=sys.stderr)
    clock = FixedClock(datetime(2026, 11, 27, 6, 0, tzinfo=UTC))
    ingest.clock = embed.clock = backtest.clock = clock
    with tempfile.TemporaryDirectory() as folder:
        [nvda] = [path for path in sample_paths() if path.stem == "NVDA"]
        lines = nvda.read_text().splitlines()
        bars = Path(folder, "NVDA.csv")
        bars.write_text("\n".join([lines[0], *lines[-BARS:]]) + "\n")
        database = Path(folder, "previous.db")
        url = f"sqlite:///{database}"
        upgrade_database(url)
        assert current_revision(url) == "0003", current_revision(url)
        ingest.ingest_file.fn(url, str(bars))
        embed.embed_symbol.fn(url, "NVDA", WindowEmbedderConfig(dimension=DIMENSION))
        config = BacktestConfig(cash=10_000.0, commission=0.001)
        limits = RiskLimits(max_order_notional=12_000.0)
        for strategy in (
            backtest.StrategySpec(name="memory_vote", params={"dimension": DIMENSION, "min_confidence": 0.6}),
            backtest.StrategySpec(name="neural", params={"train_bars": 250, "min_train_samples": 100}),
        ):
            print(backtest.backtest_symbol.fn(url, "NVDA", strategy, config, limits=limits), file=sys.stderr)
        dispose_engines()
        with gzip.open(OUTPUT, "wb", compresslevel=9) as target, database.open("rb") as source:
            shutil.copyfileobj(source, target)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
