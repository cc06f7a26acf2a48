"""The backtester of two checkouts side by side in one process, calls interleaved: is a change slower?

    python bench/engine_ab.py BASELINE_CHECKOUT [--rounds 200]

BASELINE_CHECKOUT is another checkout of this repository (e.g. ``git worktree add /tmp/base <commit>``);
it is compared with the checkout this script belongs to. Both are imported into this process (one after
the other, under the package name ``neuraltrade``) and every case alternates a baseline call and a new
call, so that the machine's load falls on both alike. Timed on the shipped NVDA file, first 2,000 bars,
SMA crossover 10/20, as `bench/backtest.py`. Prints min and median microseconds and their ratios.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARS = 2_000


def load(root: Path) -> dict[str, Callable[[], object]]:
    """The timed cases of the checkout at `root`, built from its own modules."""
    for name in [name for name in sys.modules if name == "neuraltrade" or name.startswith("neuraltrade.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        backtest = importlib.import_module("neuraltrade.backtest")
        run_backtest = importlib.import_module("neuraltrade.backtest.engine").run_backtest
        registry = importlib.import_module("neuraltrade.strategies.registry")
        try:
            read_bars = importlib.import_module("neuraltrade.market.ingest").read_bars
        except ModuleNotFoundError:  # checkouts before the domain's subpackages
            read_bars = importlib.import_module("neuraltrade.ingest").read_bars
        loaded = Path(sys.modules["neuraltrade"].__file__ or "").resolve()
        if not loaded.is_relative_to(root.resolve()):
            raise SystemExit(f"imported neuraltrade from {loaded}, not from {root}")
    finally:
        sys.path.remove(str(root))
    market = backtest.MarketData.from_frame(read_bars(ROOT / "neuraltrade" / "sample_data" / "NVDA.csv").frame[:BARS])
    unchecked = backtest.BacktestConfig(cash=10_000.0, commission=0.002, exclusive_orders=True, verify_causality=False)
    checked = backtest.BacktestConfig(cash=10_000.0, commission=0.002, exclusive_orders=True)
    strategy = registry.build_strategy("sma_cross", {"fast": 10, "slow": 20})
    history = market.histories[market.symbols[0]]
    frames = {history.symbol: strategy.signals(history)}

    def one_run() -> object:
        return run_backtest(market, registry.build_strategy("sma_cross", {"fast": 10, "slow": 20}), checked).statistics

    return {
        "fast path, signals given": lambda: run_backtest(market, strategy, unchecked, frames=frames),
        "one run (bench: checked + statistics)": one_run,
        "event loop, record_orders": lambda: run_backtest(
            market, strategy, unchecked, frames=frames, record_orders=True
        ),
        "event loop, record_orders, trades read": lambda: (
            run_backtest(market, strategy, unchecked, frames=frames, record_orders=True).trades
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="another checkout of this repository")
    parser.add_argument("--rounds", type=int, default=200)
    arguments = parser.parse_args()
    baseline, new = load(arguments.baseline), load(ROOT)
    print(
        f"{'case':42s} {'baseline min':>12s} {'median':>8s} {'new min':>8s} {'median':>8s} {'new/base min':>12s} median"
    )
    for name, first in baseline.items():
        second = new[name]
        first(), second()
        before, after = [], []
        for _ in range(arguments.rounds):
            start = time.perf_counter()
            first()
            before.append(time.perf_counter() - start)
            start = time.perf_counter()
            second()
            after.append(time.perf_counter() - start)
        low_before, low_after = min(before) * 1e6, min(after) * 1e6
        mid_before, mid_after = statistics.median(before) * 1e6, statistics.median(after) * 1e6
        print(
            f"{name:42s} {low_before:12.0f} {mid_before:8.0f} {low_after:8.0f} {mid_after:8.0f} "
            f"{low_after / low_before:12.2f} {mid_after / mid_before:6.2f}"
        )


if __name__ == "__main__":
    main()
