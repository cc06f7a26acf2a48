"""The backtester beside backtesting.py 0.6.6 and vectorbt: the same bars, the same SMA crossover, one run.

Data: the first 2,000 daily bars of NVDA, from the shipped neuraltrade/sample_data/NVDA.csv. Strategy:
backtesting.py's ``SmaCross`` example - long when the 10-bar
``pd.Series(close).rolling(n).mean()`` crosses above the 20-bar one (``crossover``), short when it
crosses below; cash 10,000, commission 0.2 % per fill, exclusive orders (each signal reverses), market
orders filled at the next open, all-in whole units.

1. Correctness: every trade of ours (entry and exit bar, size, prices, PnL) and the final equity against
   backtesting.py's, asserted, and the headline statistics side by side; then vectorbt set to the same
   semantics (signals shifted one bar and filled at the open, ``size=inf`` with ``size_granularity=1``,
   ``fees=0.002``, long and short entries reversing each other), compared the same way without asserting.
2. One run: median wall time of backtesting.py's ``Backtest.run`` (which computes its statistics) against
   ours, ``run_backtest`` plus ``result.statistics`` (all 34 figures), runs interleaved.
3. Sweep of 60 combinations (fast in 6 values x slow in 10): vectorbt after its numba warm-up (MA.run,
   crossings, ``Portfolio.from_signals`` and total return, Sharpe ratio, max drawdown, trade count and
   win rate of every column) against `neuraltrade.research.sweep.sweep` in processes and in this process, with
   our averages summed as pandas does (``rolling``) and as vectorbt does (``running_sum``); backtesting.py's
   ``Backtest.optimize`` once, for reference. The per-combination results are cross-checked: our Sharpe
   ratios against ``optimize``'s heatmap, our final equities against vectorbt's. Last, the median cost
   of each part of one evaluation of our sweep (signals, causality check, engine, statistics).

Usage::

    .venv/bin/python bench/backtest.py [--runs 25] [--repeats 9] [--no-optimize] [--out bench/results/backtest.json]

Prints Markdown tables and writes every figure to ``--out`` and the printed report beside it (``.txt``).
About a minute on 2 cores, most of it backtesting.py's runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bars would clutter the output

import backtesting
import numpy as np
import pandas as pd
import vectorbt as vbt
from backtesting import Backtest, Strategy
from backtesting.lib import crossover

from neuraltrade.backtest import BacktestConfig, MarketData, run_backtest
from neuraltrade.backtest.statistics import compute_statistics
from neuraltrade.market.ingest import read_bars
from neuraltrade.research.sweep import SweepPool, grid, sweep
from neuraltrade.strategies.base import verify_causality
from neuraltrade.strategies.registry import build_strategy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_NVDA = ROOT / "neuraltrade" / "sample_data" / "NVDA.csv"
BARS = 2_000
CASH = 10_000.0
COMMISSION = 0.002
FAST, SLOW = 10, 20
SWEEP_FAST = (5, 8, 10, 12, 15, 18)
SWEEP_SLOW = (20, 25, 30, 35, 40, 50, 60, 80, 100, 120)
TARGET_RUN_RATIO = 10.0
TARGET_SWEEP_RATIO = 1.0
CENT = 0.005
#: backtesting.py's statistic -> ours, for the side-by-side table (drawdowns: theirs negative, ours positive).
HEADLINE = {
    "Return [%]": "return_pct",
    "Buy & Hold Return [%]": "buy_hold_return_pct",
    "Sharpe Ratio": "sharpe",
    "Sortino Ratio": "sortino",
    "Max. Drawdown [%]": "max_drawdown_pct",
    "Exposure Time [%]": "exposure_pct",
    "# Trades": "trades",
    "Win Rate [%]": "win_rate_pct",
    "Profit Factor": "profit_factor",
    "SQN": "sqn",
}

lines: list[str] = []


def say(text: str = "") -> None:
    """Print a line of the report and keep it for the .txt file."""
    print(text, flush=True)
    lines.append(text)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------------------------------
# The contenders


def moving_average(values: np.ndarray, bars: int) -> pd.Series:
    return pd.Series(values).rolling(bars).mean()


class SmaCross(Strategy):
    """backtesting.py's own example strategy."""

    fast = FAST
    slow = SLOW

    def init(self) -> None:
        self.fast_average = self.I(moving_average, self.data.Close, self.fast)
        self.slow_average = self.I(moving_average, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.fast_average, self.slow_average):
            self.buy()
        elif crossover(self.slow_average, self.fast_average):
            self.sell()


def data_path() -> Path:
    return SAMPLE_NVDA


def backtesting_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, nrows=BARS)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("Date"), utc=True)).as_unit("us")
    return frame[["Open", "High", "Low", "Close", "Volume"]]


def our_config(*, verify: bool = True) -> BacktestConfig:
    return BacktestConfig(cash=CASH, commission=COMMISSION, exclusive_orders=True, verify_causality=verify)


def run_backtesting(backtest: Backtest, **params: int) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backtest.run(**params)


def crossings(close: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    """backtesting.py's crossings of two pandas rolling means: strictly below, then strictly above."""
    first = moving_average(close, fast).to_numpy()
    second = moving_average(close, slow).to_numpy()
    up = np.zeros(len(close), dtype=bool)
    down = np.zeros(len(close), dtype=bool)
    with np.errstate(invalid="ignore"):
        up[1:] = (first[:-1] < second[:-1]) & (first[1:] > second[1:])
        down[1:] = (second[:-1] < first[:-1]) & (second[1:] > first[1:])
    return up, down


def vectorbt_portfolio(frame: pd.DataFrame, longs: pd.DataFrame | pd.Series, shorts: pd.DataFrame | pd.Series) -> Any:
    """vectorbt under backtesting.py's rules: decided at a close, filled at the next open, all-in whole units."""
    return vbt.Portfolio.from_signals(
        frame["Close"],
        entries=longs.shift(1, fill_value=False),
        short_entries=shorts.shift(1, fill_value=False),
        price=frame["Open"],
        size=np.inf,
        size_granularity=1,
        fees=COMMISSION,
        init_cash=CASH,
        freq="1D",
    )


def vectorbt_sweep(frame: pd.DataFrame, combinations: list[dict[str, Any]]) -> dict[str, pd.Series]:
    close = frame["Close"]
    fast = vbt.MA.run(close, window=[combination["fast"] for combination in combinations], short_name="fast")
    slow = vbt.MA.run(close, window=[combination["slow"] for combination in combinations], short_name="slow")
    portfolio = vectorbt_portfolio(frame, fast.ma_crossed_above(slow), fast.ma_crossed_below(slow))
    return {
        "total_return": portfolio.total_return(),
        "sharpe": portfolio.sharpe_ratio(),
        "max_drawdown": portfolio.max_drawdown(),
        "trades": portfolio.trades.count(),
        "win_rate": portfolio.trades.win_rate(),
        "final_value": portfolio.final_value(),
    }


# --------------------------------------------------------------------------------------------------
# 1. Correctness


def compare_trades(
    theirs: list[dict[str, float]], ours: list[dict[str, float]], price_tolerance: float = 1e-9
) -> list[str]:
    """Return one line per difference between two trade lists (empty: identical to the cent)."""
    problems = []
    if len(theirs) != len(ours):
        problems.append(f"{len(ours)} trades against {len(theirs)}")
    for number, (their, our) in enumerate(zip(theirs, ours, strict=False)):
        for key in ("entry_bar", "exit_bar", "size"):
            if their[key] != our[key]:
                problems.append(f"trade {number}: {key} {our[key]} against {their[key]}")
        for key in ("entry_price", "exit_price"):
            if not math.isclose(their[key], our[key], rel_tol=price_tolerance, abs_tol=0.0):
                problems.append(f"trade {number}: {key} {our[key]!r} against {their[key]!r}")
        if abs(their["pnl"] - our["pnl"]) >= CENT:
            problems.append(f"trade {number}: pnl {our['pnl']:.4f} against {their['pnl']:.4f}")
    return problems


def correctness(frame: pd.DataFrame, market: MarketData) -> dict[str, Any]:
    backtest = Backtest(frame, SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True)
    stats = run_backtesting(backtest)
    their_trades = [
        {
            "entry_bar": int(row.EntryBar),
            "exit_bar": int(row.ExitBar),
            "size": float(row.Size),
            "entry_price": float(row.EntryPrice),
            "exit_price": float(row.ExitPrice),
            "pnl": float(row.PnL),
        }
        for row in stats["_trades"].itertuples(index=False)
    ]
    result = run_backtest(market, build_strategy("sma_cross", {"fast": FAST, "slow": SLOW}), our_config())
    our_trades = [
        {key: row[key] for key in ("entry_bar", "exit_bar", "size", "entry_price", "exit_price", "pnl")}
        for row in result.trade_rows()
    ]
    their_final = float(stats["Equity Final [$]"])
    our_final = float(result.equity[-1])
    our_problems = compare_trades(their_trades, our_trades)
    if abs(their_final - our_final) >= CENT:
        our_problems.append(f"final equity {our_final:.4f} against {their_final:.4f}")

    # vectorbt: the same crossings, its own portfolio simulation.
    up, down = crossings(frame["Close"].to_numpy(), FAST, SLOW)
    portfolio = vectorbt_portfolio(frame, pd.Series(up, index=frame.index), pd.Series(down, index=frame.index))
    records = portfolio.trades.records_arr
    closed = records[records["status"] == 1]
    still_open = records[records["status"] == 0]
    vectorbt_trades = [
        {
            "entry_bar": int(row["entry_idx"]),
            "exit_bar": int(row["exit_idx"]),
            "size": float(row["size"]) * (1.0 if row["direction"] == 0 else -1.0),
            "entry_price": float(row["entry_price"]),
            "exit_price": float(row["exit_price"]),
            "pnl": float(row["pnl"]),
        }
        for row in closed
    ]
    vectorbt_final = float(portfolio.final_value())
    vectorbt_problems = compare_trades(their_trades, vectorbt_trades)
    if abs(their_final - vectorbt_final) >= CENT:
        vectorbt_problems.append(f"final equity {vectorbt_final:.4f} against {their_final:.4f}")
    if len(still_open) != len(result.open_trades):
        vectorbt_problems.append(f"{len(still_open)} open trades at the end against our {len(result.open_trades)}")

    ours_statistics = result.statistics.to_dict()
    headline = []
    for their_key, our_key in HEADLINE.items():
        their_value = float(stats[their_key])
        headline.append(
            {
                "statistic": our_key,
                "backtesting_py": -their_value if "Drawdown" in their_key else their_value,
                "neuraltrade": ours_statistics[our_key],
            }
        )
    return {
        "trades": len(their_trades),
        "open_trades_at_end": len(result.open_trades),
        "final_equity": {"backtesting_py": their_final, "neuraltrade": our_final, "vectorbt": vectorbt_final},
        "neuraltrade_differences": our_problems,
        "vectorbt_differences": vectorbt_problems,
        "vectorbt_trades": len(vectorbt_trades),
        "vectorbt_open_trades": len(still_open),
        "trade_table": [
            {"backtesting_py": their, "neuraltrade": our} for their, our in zip(their_trades, our_trades, strict=False)
        ],
        "headline_statistics": headline,
    }


def print_correctness(report: dict[str, Any]) -> None:
    say("### 1. Correctness: SMA crossover 10/20, NVDA 2,000 daily bars, cash 10,000, commission 0.2 %\n")
    say("| # | entry bar | exit bar | size | entry price | exit price | PnL backtesting.py | PnL ours |")
    say("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = report["trade_table"]
    shown = list(range(min(8, len(table)))) + list(range(max(8, len(table) - 4), len(table)))
    for number in shown:
        their, our = table[number]["backtesting_py"], table[number]["neuraltrade"]
        say(
            f"| {number} | {our['entry_bar']} | {our['exit_bar']} | {our['size']:+,.0f} | {our['entry_price']:.6f} | "
            f"{our['exit_price']:.6f} | {their['pnl']:,.2f} | {our['pnl']:,.2f} |"
        )
        if number == 7 and len(table) > 12:
            say(f"| ... | {len(table) - 12} more | | | | | | |")
    finals = report["final_equity"]
    say()
    say(
        f"- trades: {report['trades']} closed (plus {report['open_trades_at_end']} open at the end) in both; "
        f"final equity backtesting.py {finals['backtesting_py']:,.6f}, ours {finals['neuraltrade']:,.6f}, "
        f"vectorbt {finals['vectorbt']:,.6f}"
    )
    ours = report["neuraltrade_differences"]
    say(
        "- neuraltrade against backtesting.py: "
        + (
            "**identical**: every trade's bars, size and prices, PnL and the final equity to the cent"
            if not ours
            else "; ".join(ours[:5])
        )
    )
    theirs = report["vectorbt_differences"]
    say(
        "- vectorbt against backtesting.py: "
        + (
            f"**agrees to the cent**: {report['vectorbt_trades']} closed trades "
            f"(+{report['vectorbt_open_trades']} open), bars, sizes (shorts included), prices, PnL and final value"
            if not theirs
            else f"{len(theirs)} differences: " + "; ".join(theirs[:5])
        )
    )
    say()
    say("| statistic | backtesting.py | ours |")
    say("| --- | ---: | ---: |")
    for row in report["headline_statistics"]:
        say(f"| {row['statistic']} | {row['backtesting_py']:.10g} | {row['neuraltrade']:.10g} |")
    say()


# --------------------------------------------------------------------------------------------------
# 2. One run


def time_interleaved(contenders: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Run each contender once per round, `runs` rounds, so that load changes hit every one alike."""
    for run in contenders.values():
        run()  # warm-up: imports, caches, numba
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_ms": statistics.median(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "runs": len(samples),
        "samples_ms": [round(sample * 1000, 3) for sample in samples],
    }


def one_run(frame: pd.DataFrame, market: MarketData, runs: int) -> dict[str, Any]:
    backtest = Backtest(frame, SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True)
    parameters = {"fast": FAST, "slow": SLOW}

    def ours(verify: bool) -> Callable[[], object]:
        config = our_config(verify=verify)
        return lambda: run_backtest(market, build_strategy("sma_cross", parameters), config).statistics

    before = load()
    times = time_interleaved(
        {
            "backtesting_py": lambda: run_backtesting(backtest),
            "neuraltrade": ours(True),
            "neuraltrade_no_causality_check": ours(False),
        },
        runs,
    )
    report: dict[str, Any] = {name: summary(samples) for name, samples in times.items()}
    report["ratio"] = report["backtesting_py"]["median_ms"] / report["neuraltrade"]["median_ms"]
    report["ratio_no_causality_check"] = (
        report["backtesting_py"]["median_ms"] / report["neuraltrade_no_causality_check"]["median_ms"]
    )
    report["load_average"] = [before, load()]
    return report


def print_one_run(report: dict[str, Any]) -> None:
    say(f"### 2. One run (median of {report['neuraltrade']['runs']} interleaved runs, statistics included)\n")
    say("| contender | median (ms) | min (ms) | max (ms) | backtesting.py / this |")
    say("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "backtesting_py": "backtesting.py `Backtest.run`",
        "neuraltrade": "ours: `run_backtest` + `.statistics` (causality check on, the default)",
        "neuraltrade_no_causality_check": "ours, `verify_causality=False`",
    }
    for name, label in labels.items():
        row = report[name]
        ratio = report["backtesting_py"]["median_ms"] / row["median_ms"]
        say(f"| {label} | {row['median_ms']:.2f} | {row['min_ms']:.2f} | {row['max_ms']:.2f} | {ratio:.1f}x |")
    met = "met" if report["ratio"] >= TARGET_RUN_RATIO else "MISSED"
    say(
        f"\n- target >= {TARGET_RUN_RATIO:.0f}x: **{met}** ({report['ratio']:.1f}x); "
        f"load average {report['load_average']}\n"
    )


# --------------------------------------------------------------------------------------------------
# 3. Sweep


def sweep_section(frame: pd.DataFrame, market: MarketData, repeats: int, optimize: bool) -> dict[str, Any]:
    space = {"fast": list(SWEEP_FAST), "slow": list(SWEEP_SLOW)}
    combinations = grid(space)
    count = len(combinations)
    running_sum = [{**combination, "average": "running_sum"} for combination in combinations]
    # Both after their warm-up: vectorbt's numba compilation (run once before timing) and our worker
    # processes (started once, kept for every sweep, as research that sweeps again and again keeps them).
    pool = SweepPool(market, "sma_cross", our_config()).__enter__()
    contenders: dict[str, Callable[[], object]] = {
        "vectorbt": lambda: vectorbt_sweep(frame, combinations),
        "ours_warm_pool": lambda: pool.sweep(combinations),
        "ours_processes": lambda: sweep(market, "sma_cross", combinations, our_config()),
        "ours_in_process": lambda: sweep(market, "sma_cross", combinations, our_config(), workers=1),
        "ours_processes_running_sum": lambda: sweep(market, "sma_cross", running_sum, our_config()),
        "ours_in_process_running_sum": lambda: sweep(market, "sma_cross", running_sum, our_config(), workers=1),
        "ours_processes_no_causality_check": lambda: sweep(market, "sma_cross", combinations, our_config(verify=False)),
        "ours_processes_running_sum_no_causality_check": lambda: sweep(
            market, "sma_cross", running_sum, our_config(verify=False)
        ),
    }
    before = load()
    try:
        times = time_interleaved(contenders, repeats)
    finally:
        pool.__exit__(None, None, None)
    report: dict[str, Any] = {"combinations": count, "workers": os.cpu_count(), "contenders": {}}
    for name, samples in times.items():
        row = summary(samples)
        row["backtests_per_second"] = count / (row["median_ms"] / 1000)
        report["contenders"][name] = row
    report["load_average"] = [before, load()]
    vectorbt_rate = report["contenders"]["vectorbt"]["backtests_per_second"]
    report["ratio"] = report["contenders"]["ours_warm_pool"]["backtests_per_second"] / vectorbt_rate
    report["ratio_cold"] = report["contenders"]["ours_processes"]["backtests_per_second"] / vectorbt_rate

    # Cross-checks of the sweep's figures.
    vectorbt_figures = vectorbt_sweep(frame, combinations)
    ours_running = sweep(market, "sma_cross", running_sum, our_config(), workers=1)
    finals = vectorbt_figures["final_value"]
    agree = [
        abs(row.statistics["equity_final"] - float(finals[(row.params["fast"], row.params["slow"])])) < CENT
        for row in ours_running.rows
    ]
    report["vectorbt_final_equity_agreement"] = {"agree": sum(agree), "of": len(agree)}
    report["vectorbt_statistics"] = "total_return, sharpe_ratio, max_drawdown, trades.count, trades.win_rate"

    if optimize:
        backtest = Backtest(frame, SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, heatmap = backtest.optimize(**space, maximize="Sharpe Ratio", return_heatmap=True)
        seconds = time.perf_counter() - started
        report["backtesting_py_optimize"] = {"seconds": seconds, "backtests_per_second": count / seconds}
        ours = sweep(market, "sma_cross", combinations, our_config(), workers=1)
        same = [
            math.isclose(
                row.statistics["sharpe"], float(heatmap[(row.params["fast"], row.params["slow"])]), rel_tol=1e-9
            )
            for row in ours.rows
        ]
        report["backtesting_py_sharpe_agreement"] = {"agree": sum(same), "of": len(same)}

    report["breakdown"] = breakdown(market)
    return report


def breakdown(market: MarketData, rounds: int = 200) -> dict[str, float]:
    """Median microseconds of each part of one sweep evaluation (fast 10, slow 20), interleaved."""
    history = market.histories[market.symbols[0]]
    rolling = build_strategy("sma_cross", {"fast": FAST, "slow": SLOW})
    running = build_strategy("sma_cross", {"fast": FAST, "slow": SLOW, "average": "running_sum"})
    frame = rolling.signals(history)
    unchecked = our_config(verify=False)
    result = run_backtest(market, rolling, unchecked, frames={history.symbol: frame})
    parts: dict[str, Callable[[], object]] = {
        "build the strategy (registry)": lambda: build_strategy("sma_cross", {"fast": FAST, "slow": SLOW}),
        "signals, rolling means (pandas)": lambda: rolling.signals(history),
        "signals, running_sum means (numpy)": lambda: running.signals(history),
        "causality check (verify_causality), rolling": lambda: verify_causality(rolling, history, frame),
        "engine: run_backtest given the signals (fast path)": lambda: run_backtest(
            market, rolling, unchecked, frames={history.symbol: frame}
        ),
        "statistics: compute_statistics (34 figures)": lambda: compute_statistics(
            equity=result.equity, timestamps=market.timestamps, trades=result.trades, prices=market.close[0]
        ),
        "one evaluation: sweep(workers=1) of one combination, rolling, checked": lambda: sweep(
            market, "sma_cross", [{"fast": FAST, "slow": SLOW}], our_config(), workers=1
        ),
    }
    times = time_interleaved(parts, rounds)
    return {name: statistics.median(samples) * 1e6 for name, samples in times.items()}


def print_sweep(report: dict[str, Any]) -> None:
    count = report["combinations"]
    say(f"### 3. Sweep: {count} combinations (fast {list(SWEEP_FAST)} x slow {list(SWEEP_SLOW)}), 2,000 bars\n")
    say("| contender | median (ms) | backtests/s | ours / vectorbt | min (ms) | ours / vectorbt at min |")
    say("| --- | ---: | ---: | ---: | ---: | ---: |")
    labels = {
        "vectorbt": "vectorbt (after numba warm-up): MA.run, crossings, from_signals, 5 statistics",
        "ours_warm_pool": f"ours: `SweepPool.sweep`, {report['workers']} warm processes, 34 statistics each",
        "ours_processes": f"ours: `sweep` in {report['workers']} processes, 34 statistics each (rolling means)",
        "ours_in_process": "ours: `sweep(workers=1)`, in process (rolling means)",
        "ours_processes_running_sum": "ours: `sweep` in processes, `average=running_sum` (vectorbt's MA)",
        "ours_in_process_running_sum": "ours: `sweep(workers=1)`, `average=running_sum`",
        "ours_processes_no_causality_check": "ours: `sweep` in processes, rolling, `verify_causality=False`",
        "ours_processes_running_sum_no_causality_check": "ours: processes, `running_sum`, no causality check",
    }
    vectorbt = report["contenders"]["vectorbt"]
    for name, label in labels.items():
        row = report["contenders"][name]
        ratio = "" if name == "vectorbt" else f"{vectorbt['median_ms'] / row['median_ms']:.2f}x"
        at_min = "" if name == "vectorbt" else f"{vectorbt['min_ms'] / row['min_ms']:.2f}x"
        say(
            f"| {label} | {row['median_ms']:.1f} | {row['backtests_per_second']:,.0f} | {ratio} | "
            f"{row['min_ms']:.1f} | {at_min} |"
        )
    optimize = report.get("backtesting_py_optimize")
    if optimize:
        say(
            f"| backtesting.py `Backtest.optimize` (its process pool), once | {optimize['seconds'] * 1000:.0f} | "
            f"{optimize['backtests_per_second']:,.0f} | | | |"
        )
    met = "met" if report["ratio"] >= TARGET_SWEEP_RATIO else "MISSED"
    say(
        f"\n- target ours after warm-up (`SweepPool`, default configuration, causality checked) >= vectorbt "
        f"after warm-up: **{met}** ({report['ratio']:.2f}x by medians; a cold `sweep`, starting its processes "
        f"each time: {report['ratio_cold']:.2f}x); load average {report['load_average']} (the min column is the "
        "quietest round: with another process on one of the two cores, processes gain little)"
    )
    agreement = report["vectorbt_final_equity_agreement"]
    say(
        f"- final equity, ours (`running_sum`) against vectorbt, to the cent: {agreement['agree']} of "
        f"{agreement['of']} combinations agree"
    )
    if "backtesting_py_sharpe_agreement" in report:
        sharpe = report["backtesting_py_sharpe_agreement"]
        say(f"- Sharpe ratio, ours (rolling) against `optimize`'s heatmap: {sharpe['agree']} of {sharpe['of']} agree")
    say(f"- vectorbt statistics computed: {report['vectorbt_statistics']}")
    say("\nwhere one evaluation of our sweep spends its time (median of 200 interleaved calls):\n")
    say("| part | microseconds |")
    say("| --- | ---: |")
    for name, microseconds in report["breakdown"].items():
        say(f"| {name} | {microseconds:,.0f} |")
    say()


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=25, help="interleaved runs of the single backtest")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats of each sweep")
    parser.add_argument("--no-optimize", action="store_true", help="skip backtesting.py's Backtest.optimize")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backtest.json")
    arguments = parser.parse_args()

    path = data_path()
    frame = backtesting_frame(path)
    market = MarketData.from_frame(read_bars(path).frame.iloc[:BARS])
    report: dict[str, Any] = {
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {
            "backtesting": backtesting.__version__,
            "vectorbt": vbt.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/backtest.py", *sys.argv[1:]]),
        "data": f"{path} (first {BARS:,} rows)",
        "load_average_at_start": load(),
    }
    say(f"machine: {report['machine']}")
    say(f"versions: {', '.join(f'{name} {version}' for name, version in report['versions'].items())}")
    say(f"data: {report['data']}; load average at start {report['load_average_at_start']}\n")

    log("correctness")
    report["correctness"] = correctness(frame, market)
    print_correctness(report["correctness"])
    log("one run")
    report["one_run"] = one_run(frame, market, arguments.runs)
    print_one_run(report["one_run"])
    log("sweep")
    report["sweep"] = sweep_section(frame, market, arguments.repeats, not arguments.no_optimize)
    print_sweep(report["sweep"])

    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))
    arguments.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    log(f"wrote {arguments.out} and {arguments.out.with_suffix('.txt')}")
    assert not report["correctness"]["neuraltrade_differences"], report["correctness"]["neuraltrade_differences"]


if __name__ == "__main__":
    main()
