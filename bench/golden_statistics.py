"""Regenerate tests/domain/data/statistics_golden.json: backtesting.py's statistics of a few real runs.

Each case runs backtesting.py 0.6.6 (a benchmark-only extra; the tests never import it) and stores what
`neuraltrade.backtest.statistics.compute_statistics` needs to recompute the figures - the equity curve, the
bar timestamps, the closed trades, the close prices and the indicator warm-up - beside backtesting.py's own
figures under neuraltrade's names. tests/domain/test_statistics.py replays every case.

Cases: an SMA crossover (strict crossing, long and short, `exclusive_orders=True`, cash 10,000, commission
0.2 %) on the first 1,000 daily bars of NVDA for two parameter sets, each with and without
`finalize_trades=True`; a strategy that never trades; synthetic random walks with bars on every day
(weekends present), every hour and every week, which exercise the other annualisations and resamplings;
and minute bars within a single day, which leave no day return at all (0.6.6 then reports the annualised
figures as undefined, where 0.6.5 counted the first day's missing return as a zero).

Usage::

    .venv/bin/python bench/golden_statistics.py [--output tests/domain/data/statistics_golden.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bars would clutter the output

import backtesting
import numpy as np
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting._util import _indicator_warmup_nbars

from neuraltrade.canonical import format_timestamp

ROOT = Path(__file__).resolve().parents[1]
NVDA = ROOT / "neuraltrade" / "sample_data" / "NVDA.csv"
OUTPUT = ROOT / "tests" / "domain" / "data" / "statistics_golden.json"
NVDA_BARS = 1_000
CASH = 10_000
COMMISSION = 0.002
#: SMA lengths of the timing run: about 50 trades over the first 2,000 NVDA bars.
TIMING_FAST, TIMING_SLOW = 8, 40

#: backtesting.py's key -> neuraltrade's field; drawdowns change sign (neuraltrade reports them positive).
NAMES = {
    "Start": "start",
    "End": "end",
    "Duration": "duration_days",
    "Exposure Time [%]": "exposure_pct",
    "Equity Final [$]": "equity_final",
    "Equity Peak [$]": "equity_peak",
    "Commissions [$]": "commissions",
    "Return [%]": "return_pct",
    "Buy & Hold Return [%]": "buy_hold_return_pct",
    "Return (Ann.) [%]": "return_ann_pct",
    "Volatility (Ann.) [%]": "volatility_ann_pct",
    "CAGR [%]": "cagr_pct",
    "Sharpe Ratio": "sharpe",
    "Sortino Ratio": "sortino",
    "Calmar Ratio": "calmar",
    "Alpha [%]": "alpha_pct",
    "Beta": "beta",
    "Max. Drawdown [%]": "max_drawdown_pct",
    "Avg. Drawdown [%]": "avg_drawdown_pct",
    "Max. Drawdown Duration": "max_drawdown_duration_days",
    "Avg. Drawdown Duration": "avg_drawdown_duration_days",
    "# Trades": "trades",
    "Win Rate [%]": "win_rate_pct",
    "Best Trade [%]": "best_trade_pct",
    "Worst Trade [%]": "worst_trade_pct",
    "Avg. Trade [%]": "avg_trade_pct",
    "Max. Trade Duration": "max_trade_duration_days",
    "Avg. Trade Duration": "avg_trade_duration_days",
    "Profit Factor": "profit_factor",
    "Expectancy [%]": "expectancy_pct",
    "SQN": "sqn",
    "Kelly Criterion": "kelly",
}
NEGATED = {"Max. Drawdown [%]", "Avg. Drawdown [%]"}


def _moving_average(values: np.ndarray, bars: int) -> np.ndarray:
    return pd.Series(values).rolling(bars).mean().to_numpy()


def _crossed_above(first: np.ndarray, second: np.ndarray) -> bool:
    return bool(first[-2] < second[-2] and first[-1] > second[-1])


class SmaCross(Strategy):
    fast = 10
    slow = 30

    def init(self) -> None:
        self.fast_average = self.I(_moving_average, self.data.Close, self.fast)
        self.slow_average = self.I(_moving_average, self.data.Close, self.slow)

    def next(self) -> None:
        if _crossed_above(self.fast_average, self.slow_average):
            self.buy()
        elif _crossed_above(self.slow_average, self.fast_average):
            self.sell()


class NeverTrades(Strategy):
    def init(self) -> None:
        pass

    def next(self) -> None:
        pass


def _nvda() -> pd.DataFrame:
    frame = pd.read_csv(NVDA, nrows=NVDA_BARS)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("Date"), utc=True)).as_unit("us")
    return frame[["Open", "High", "Low", "Close", "Volume"]]


def _random_walk(index: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, len(index))))
    open_ = np.r_[100.0, close[:-1]]
    spread = 1 + np.abs(rng.normal(0, 0.005, len(index)))
    return pd.DataFrame(
        {
            "Open": open_,
            "High": np.maximum(open_, close) * spread,
            "Low": np.minimum(open_, close) / spread,
            "Close": close,
            "Volume": rng.integers(1_000, 10_000, len(index)).astype(float),
        },
        index=index.as_unit("us"),
    )


def _plain(value: Any) -> Any:
    """Golden JSON stays standard: NaN as null, infinities as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _expected(stats: pd.Series, equity: np.ndarray) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for key, name in NAMES.items():
        value = stats.get(key, 0.0 if key == "Commissions [$]" else None)  # left out when no trade was made
        if isinstance(value, pd.Timestamp):
            expected[name] = format_timestamp(value.to_pydatetime())
        elif isinstance(value, pd.Timedelta):
            expected[name] = value / pd.Timedelta(days=1)
        elif value is pd.NaT or value is None or (isinstance(value, float) and math.isnan(value)):
            expected[name] = None
        elif name.endswith("duration_days"):
            # backtesting.py reports a drawdown fraction as a "duration" when the only drawdown is the last bar
            raise SystemExit(f"{name} is {value!r}, not a duration: choose another case")
        elif name == "trades":
            expected[name] = int(value)
        else:
            number = float(value)
            expected[name] = _plain(-number if key in NEGATED else number)
    # Not in backtesting.py: historical 95 % VaR and CVaR of per-bar returns, computed the obvious way.
    returns = equity[1:] / equity[:-1] - 1
    quantile = float(np.quantile(returns, 0.05))
    expected["var_95_pct"] = -quantile * 100
    expected["cvar_95_pct"] = -float(returns[returns <= quantile].mean()) * 100
    return expected


def _case(name: str, data: pd.DataFrame, strategy: type[Strategy], finalize: bool, **parameters: int) -> dict[str, Any]:
    backtest = Backtest(
        data,
        strategy,
        cash=CASH,
        commission=COMMISSION,
        exclusive_orders=True,
        finalize_trades=finalize,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = backtest.run(**parameters)
    equity = stats["_equity_curve"]["Equity"].to_numpy(dtype=float)
    trades = [
        {
            "symbol": "NVDA" if name.startswith("nvda") else "SYNTH",
            "entry_bar": int(row.EntryBar),
            "exit_bar": int(row.ExitBar),
            "entry_time": format_timestamp(row.EntryTime.to_pydatetime()),
            "exit_time": format_timestamp(row.ExitTime.to_pydatetime()),
            "size": float(row.Size),
            "entry_price": float(row.EntryPrice),
            "exit_price": float(row.ExitPrice),
            "commission": float(row.Commission),
        }
        for row in stats["_trades"].itertuples(index=False)
    ]
    index = pd.DatetimeIndex(data.index).as_unit("us")
    return {
        "name": name,
        "strategy": strategy.__name__,
        "parameters": parameters,
        "finalize_trades": finalize,
        "warmup_bars": int(_indicator_warmup_nbars(stats["_strategy"])),
        "timestamps": [int(value) for value in index.asi8],
        "equity": [float(value) for value in equity],
        "prices": [float(value) for value in data["Close"]],
        "trades": trades,
        "expected": _expected(stats, equity),
    }


def build() -> dict[str, Any]:
    nvda = _nvda()
    cases = [
        _case(
            f"nvda_sma_{fast}_{slow}{'_finalized' if finalize else ''}", nvda, SmaCross, finalize, fast=fast, slow=slow
        )
        for fast, slow in ((10, 30), (20, 50))
        for finalize in (False, True)
    ]
    cases.append(_case("nvda_no_trades", nvda, NeverTrades, True))
    every_day = pd.date_range("2021-01-01", periods=500, freq="D", tz="UTC")
    cases.append(_case("synthetic_daily_with_weekends", _random_walk(every_day, 1), SmaCross, True, fast=5, slow=20))
    every_hour = pd.date_range("2022-03-01", periods=600, freq="h", tz="UTC")
    cases.append(_case("synthetic_hourly", _random_walk(every_hour, 2), SmaCross, False, fast=8, slow=24))
    every_week = pd.date_range("2015-01-04", periods=300, freq="W", tz="UTC")
    cases.append(_case("synthetic_weekly", _random_walk(every_week, 3), SmaCross, True, fast=5, slow=15))
    every_minute = pd.date_range("2023-05-02 00:00", periods=1_200, freq="min", tz="UTC")
    cases.append(_case("synthetic_one_day_minutes", _random_walk(every_minute, 4), SmaCross, True, fast=10, slow=40))
    return {
        "generated_by": "bench/golden_statistics.py",
        "backtesting_version": backtesting.__version__,
        "cases": cases,
    }


def _format(golden: dict[str, Any]) -> str:
    """JSON with one line per case field and per statistic, so a regenerated file diffs readably."""

    def dump(value: Any) -> str:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))

    cases = []
    for case in golden["cases"]:
        lines = [f'  "{key}": {dump(value)}' for key, value in case.items() if key not in ("trades", "expected")]
        trades = ",\n".join(f"   {dump(trade)}" for trade in case["trades"])
        lines.append(f'  "trades": [\n{trades}\n  ]' if trades else '  "trades": []')
        expected = ",\n".join(f'   "{key}": {dump(value)}' for key, value in case["expected"].items())
        lines.append(f'  "expected": {{\n{expected}\n  }}')
        cases.append(" {\n" + ",\n".join(lines) + "\n }")
    header = ",\n".join(f'"{key}": {dump(value)}' for key, value in golden.items() if key != "cases")
    return "{\n" + header + ',\n"cases": [\n' + ",\n".join(cases) + "\n]}\n"


def _inputs(case: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `compute_statistics` for a stored case."""
    from neuraltrade.backtest.trade import ClosedTrade
    from neuraltrade.canonical import parse_timestamp

    # Statistics read no ids: the trades' signal, orders and fills are placeholders.
    lineage: dict[str, Any] = {"signal_id": None}
    lineage.update(
        dict.fromkeys(("entry_order_id", "exit_order_id", "entry_fill_id", "exit_fill_id"), uuid.UUID(int=0))
    )
    trades = [
        ClosedTrade(
            **{**row, "entry_time": parse_timestamp(row["entry_time"]), "exit_time": parse_timestamp(row["exit_time"])},
            **lineage,
        )
        for row in case["trades"]
    ]
    return {
        "equity": np.array(case["equity"]),
        "timestamps": np.array(case["timestamps"], dtype=np.int64),
        "trades": trades,
        "prices": np.array(case["prices"]),
        "warmup_bars": case["warmup_bars"],
    }


def _replay(case: dict[str, Any]) -> dict[str, Any]:
    from neuraltrade.backtest.statistics import compute_statistics

    statistics = compute_statistics(**_inputs(case))
    return {name: getattr(statistics, name) for name in case["expected"]}


def _deviations(golden: dict[str, Any]) -> dict[str, float]:
    """Largest relative deviation of neuraltrade's figure from backtesting.py's, per statistic, over all cases."""
    worst: dict[str, float] = {}
    for case in golden["cases"]:
        for name, value in _replay(case).items():
            expected = case["expected"][name]
            if name in ("start", "end"):
                deviation = 0.0 if format_timestamp(value) == expected else math.inf
            elif expected is None or isinstance(expected, str):
                same = (math.isnan(value) and expected is None) or str(value) == expected
                deviation = 0.0 if same else math.inf
            else:
                deviation = 0.0 if value == expected else abs(value - expected) / abs(expected)
            worst[name] = max(worst.get(name, 0.0), deviation)
    return worst


def _timing(repeat: int) -> None:
    """Time one statistics computation for 2,000 NVDA bars and ~50 trades, here and in backtesting.py."""
    import timeit

    from backtesting._stats import compute_stats

    from neuraltrade.backtest.statistics import compute_statistics

    data = pd.read_csv(NVDA, nrows=2_000)
    data.index = pd.DatetimeIndex(pd.to_datetime(data.pop("Date"), utc=True)).as_unit("us")
    data = data[["Open", "High", "Low", "Close", "Volume"]]
    case = _case("nvda_timing", data, SmaCross, True, fast=TIMING_FAST, slow=TIMING_SLOW)
    backtest = Backtest(data, SmaCross, cash=CASH, commission=COMMISSION, exclusive_orders=True, finalize_trades=True)
    stats = backtest.run(fast=TIMING_FAST, slow=TIMING_SLOW)
    equity, trades_frame = stats["_equity_curve"]["Equity"].to_numpy(), stats["_trades"]
    inputs = _inputs(case)

    def ours() -> object:
        return compute_statistics(**inputs)

    def theirs() -> object:
        return compute_stats(trades_frame, equity, data, None)

    for name, function in (("neuraltrade compute_statistics", ours), ("backtesting.py compute_stats", theirs)):
        number = 20 if function is theirs else 200
        best = min(timeit.repeat(function, number=number, repeat=repeat)) / number
        print(f"{name:<32} {len(case['equity'])} bars, {len(case['trades'])} trades: {best * 1e6:8.0f} us per run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--timing", action="store_true", help="also time both implementations (2,000 bars)")
    parser.add_argument("--repeat", type=int, default=7, help="timing repeats; the best is reported")
    arguments = parser.parse_args()
    golden = build()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(_format(golden))
    size = arguments.output.stat().st_size
    for case in golden["cases"]:
        print(f"{case['name']:<34} bars {len(case['equity']):>5}  trades {len(case['trades']):>3}")
    print(f"wrote {arguments.output} ({size / 1024:.0f} KiB)")
    deviations = _deviations(golden)
    name = max(deviations, key=deviations.__getitem__)
    print(f"largest relative deviation from backtesting.py: {deviations[name]:.2e} ({name})")
    if arguments.timing:
        _timing(arguments.repeat)


if __name__ == "__main__":
    main()
