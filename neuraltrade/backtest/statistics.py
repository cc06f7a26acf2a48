"""Performance statistics of one backtest run, defined exactly as backtesting.py 0.6.6 defines them.

Every figure of backtesting.py's ``compute_stats`` is recomputed here in plain numpy: the statistics run once
per backtest inside parameter sweeps, where pandas' resampling and series overhead would dominate. The few
deliberate departures (drawdowns reported positive, 0.0 commissions without trades, several symbols, exposure
from `position_bars`, VaR and CVaR), every definition and what changed from 0.6.5 are in docs/statistics.md;
the golden test replays runs of backtesting.py 0.6.6 and compares every figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np

from neuraltrade.backtest.trade import TradeFigures
from neuraltrade.canonical import format_timestamp
from neuraltrade.errors import ValidationError
from neuraltrade.timestamps import from_microseconds

_MICROSECONDS_PER_SECOND = 1_000_000
_MICROSECONDS_PER_DAY = 86_400 * _MICROSECONDS_PER_SECOND
#: Resolutions a pandas Timedelta reports, coarsest first, in microseconds (backtesting.py rounds durations up
#: to the resolution of the bar period).
_RESOLUTIONS = (_MICROSECONDS_PER_DAY, 3_600_000_000, 60_000_000, 1_000_000, 1_000, 1)
#: How many trailing bars backtesting.py reads to infer the bar period.
_PERIOD_BARS = 100
_TAIL_PROBABILITY = 0.05
_DAYS_PER_YEAR = 365.25
_NAN = math.nan


@dataclass(frozen=True, kw_only=True)
class Statistics:
    """Every statistic of one run; durations in days (float), NaN where a figure is undefined.

    Percentages are in percent (``12.5`` means 12.5 %). Drawdowns, value at risk and expected shortfall are
    positive numbers for losses. See docs/statistics.md for each definition.
    """

    start: datetime
    end: datetime
    duration_days: float
    exposure_pct: float
    equity_final: float
    equity_peak: float
    commissions: float
    return_pct: float
    buy_hold_return_pct: float
    return_ann_pct: float
    volatility_ann_pct: float
    cagr_pct: float
    sharpe: float
    sortino: float
    calmar: float
    alpha_pct: float
    beta: float
    max_drawdown_pct: float
    avg_drawdown_pct: float
    max_drawdown_duration_days: float
    avg_drawdown_duration_days: float
    trades: int
    win_rate_pct: float
    best_trade_pct: float
    worst_trade_pct: float
    avg_trade_pct: float
    max_trade_duration_days: float
    avg_trade_duration_days: float
    profit_factor: float
    expectancy_pct: float
    sqn: float
    kelly: float
    var_95_pct: float
    cvar_95_pct: float

    def to_dict(self) -> dict[str, Any]:
        """Return the statistics as JSON-ready values: NaN and infinity become None, datetimes ISO 8601 UTC."""
        plain: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                plain[field.name] = format_timestamp(value)
            elif isinstance(value, float) and not math.isfinite(value):
                plain[field.name] = None
            else:
                plain[field.name] = value
        return plain


def compute_statistics(
    *,
    equity: np.ndarray,
    timestamps: np.ndarray,
    trades: Sequence[TradeFigures],
    prices: np.ndarray,
    risk_free_rate: float = 0.0,
    position_bars: np.ndarray | None = None,
    warmup_bars: int = 0,
) -> Statistics:
    """Compute the statistics of one run as backtesting.py 0.6.6's ``compute_stats`` does.

    Parameters
    ----------
    equity
        Account equity at the close of every bar of the run's timeline (float, finite, first value positive).
    timestamps
        Every bar's time in microseconds since the epoch, UTC, strictly increasing (int64).
    trades
        The run's closed trades; `entry_bar` and `exit_bar` index the timeline.
    prices
        Close prices, shape ``(bars,)`` for one symbol or ``(bars, symbols)``; NaN where a symbol has no bar.
        Buy & Hold is each symbol's return from its first close at or after `warmup_bars` to its last close,
        averaged with equal weights over the symbols.
    risk_free_rate
        Annual risk-free rate as a fraction, in (-1, 1); used by Sharpe, Sortino and alpha.
    position_bars
        Optional boolean per bar, true where a position was open; defines the exposure. Without it the
        exposure counts the bars from each closed trade's entry to its exit bar, as backtesting.py does
        (a position still open at the end then does not count).
    warmup_bars
        Bars before the strategy could trade (its indicators' warm-up); Buy & Hold starts after them, as
        backtesting.py starts it at the first bar where every indicator is defined.

    Raises
    ------
    ValidationError
        If the arrays disagree in length or hold impossible values; the message names the value.
    """
    equity, timestamps, closes, exposure_mask = _validated(
        equity, timestamps, prices, risk_free_rate, position_bars, warmup_bars
    )
    bars = len(equity)
    with np.errstate(all="ignore"):
        trade_figures = _trade_figures(trades, timestamps, exposure_mask is None)
        period = _bar_period(timestamps)
        resolution = _resolution(period)
        annual_days, group_keys = _annualisation(timestamps, period)

        equity_start = float(equity[0])
        equity_final = float(equity[-1])
        return_pct = (equity_final - equity_start) / equity_start * 100
        buy_hold_pct, market = _buy_and_hold(closes, warmup_bars)

        # Returns of the last equity of each day (week, month, year), as backtesting.py resamples them.
        last_of_group = np.empty(bars, dtype=bool)
        np.not_equal(group_keys[1:], group_keys[:-1], out=last_of_group[:-1])
        last_of_group[-1] = True
        sampled = equity[last_of_group]
        period_returns = sampled[1:] / sampled[:-1] - 1
        if not sampled[:-1].all():
            # a zero equity makes the next return 0/0, a missing return that 0.6.6 leaves out of every mean
            period_returns = period_returns[~np.isnan(period_returns)]
        # numpy scalars, so that overflow gives infinity (and a negative root NaN) as in backtesting.py; the
        # first period has no return and, since 0.6.6, counts in no mean (a run within one day has none)
        growth = np.float64(1 + _geometric_mean(period_returns))
        return_ann = float(growth**annual_days - 1)
        variance = np.float64(_sample_variance(period_returns) if len(period_returns) > 1 else _NAN)
        volatility_ann_pct = float(np.sqrt((variance + growth**2) ** annual_days - growth ** (2 * annual_days)) * 100)
        downside = (
            math.sqrt(float(np.square(np.minimum(period_returns, 0.0)).sum()) / len(period_returns))
            * math.sqrt(annual_days)
            if len(period_returns)
            else _NAN
        )
        span = int(timestamps[-1] - timestamps[0])
        whole_days, remainder = divmod(span, _MICROSECONDS_PER_DAY)
        # Calendar years, whatever the bars (0.6.6; 0.6.5 divided calendar days by the periods per year).
        years = (whole_days + (remainder // _MICROSECONDS_PER_SECOND) / 86_400) / _DAYS_PER_YEAR
        cagr_pct = float((np.float64(equity_final / equity_start) ** (1 / years) - 1) * 100) if years else _NAN

        drawdown = 1 - equity / np.maximum.accumulate(equity)
        max_drawdown = float(drawdown.max())
        avg_drawdown, max_drawdown_span, mean_drawdown_span = _drawdown_episodes(drawdown, timestamps)

        growth_per_bar = equity[1:] / equity[:-1]
        beta = _beta(growth_per_bar, market)
        exposure = (
            trade_figures.exposed_bars / bars if exposure_mask is None else np.count_nonzero(exposure_mask) / bars
        )
        value_at_risk, expected_shortfall = _tail_risk(growth_per_bar - 1)

    return Statistics(
        start=from_microseconds(int(timestamps[0])),
        end=from_microseconds(int(timestamps[-1])),
        duration_days=span / _MICROSECONDS_PER_DAY,
        exposure_pct=exposure * 100,
        equity_final=equity_final,
        equity_peak=float(equity.max()),
        commissions=trade_figures.commissions,
        return_pct=return_pct,
        buy_hold_return_pct=buy_hold_pct,
        return_ann_pct=return_ann * 100,
        volatility_ann_pct=volatility_ann_pct,
        cagr_pct=cagr_pct,
        sharpe=_divide(return_ann * 100 - risk_free_rate * 100, volatility_ann_pct or _NAN),
        sortino=_divide(return_ann - risk_free_rate, downside),
        calmar=_divide(return_ann, max_drawdown or _NAN),
        alpha_pct=return_pct - risk_free_rate * 100 - beta * (buy_hold_pct - risk_free_rate * 100),
        beta=beta,
        max_drawdown_pct=max_drawdown * 100,
        avg_drawdown_pct=avg_drawdown * 100,
        max_drawdown_duration_days=_days(max_drawdown_span, resolution),
        avg_drawdown_duration_days=_days(mean_drawdown_span, resolution),
        trades=trade_figures.count,
        win_rate_pct=trade_figures.win_rate * 100,
        best_trade_pct=trade_figures.best * 100,
        worst_trade_pct=trade_figures.worst * 100,
        avg_trade_pct=trade_figures.geometric_mean * 100,
        max_trade_duration_days=_days(trade_figures.max_duration, resolution),
        avg_trade_duration_days=_days(trade_figures.mean_duration, resolution),
        profit_factor=trade_figures.profit_factor,
        expectancy_pct=trade_figures.expectancy * 100,
        sqn=trade_figures.sqn,
        kelly=trade_figures.kelly,
        var_95_pct=value_at_risk,
        cvar_95_pct=expected_shortfall,
    )


@dataclass(frozen=True, slots=True)
class _TradeFigures:
    count: int
    commissions: float
    exposed_bars: int
    win_rate: float
    best: float
    worst: float
    geometric_mean: float
    max_duration: int | None  # microseconds
    mean_duration: int | None
    profit_factor: float
    expectancy: float
    sqn: float
    kelly: float


def _trade_figures(trades: Sequence[TradeFigures], timestamps: np.ndarray, count_exposure: bool) -> _TradeFigures:
    count = len(trades)
    bars = len(timestamps)
    if count == 0:
        nan = _NAN
        return _TradeFigures(0, 0.0, 0, nan, nan, nan, nan, None, None, nan, nan, nan, nan)
    values = chain.from_iterable(
        [(t.size, t.entry_price, t.exit_price, t.commission, t.entry_bar, t.exit_bar) for t in trades]
    )
    rows = np.fromiter(values, dtype=np.float64, count=6 * count).reshape(count, 6)
    size, entry_price, exit_price, commission = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    entry_bar, exit_bar = rows[:, 4], rows[:, 5]
    # One min and one max per column: NaN propagates into both and fails every comparison below.
    lows, highs = rows.min(axis=0), rows.max(axis=0)
    if not (
        lows[4] >= 0
        and highs[5] < bars
        and lows[1] > 0
        and lows[2] > 0
        and all(map(math.isfinite, [*highs[:4].tolist(), *lows[:4].tolist()]))
        and np.count_nonzero(size) == count
        and (exit_bar - entry_bar).min() >= 0
    ):
        broken = (entry_bar < 0) | (exit_bar < entry_bar) | (exit_bar >= bars) | (size == 0)
        broken |= ~np.isfinite(rows[:, :4]).all(axis=1) | ~(entry_price > 0) | ~(exit_price > 0)
        trade = trades[int(np.flatnonzero(broken)[0])]
        raise ValidationError(
            f"trade of {trade.symbol} from bar {trade.entry_bar} to {trade.exit_bar} (of {bars}) with size "
            f"{trade.size}, prices {trade.entry_price} -> {trade.exit_price} and commission {trade.commission} "
            "is impossible: bars must be ordered and inside the run, sizes non-zero, prices positive"
        )
    entries, exits = entry_bar.astype(np.int64), exit_bar.astype(np.int64)
    # A trade's times are those of its bars (as in backtesting.py); reading them from the timeline is exact and fast.
    durations = timestamps[exits] - timestamps[entries]

    exposed_bars = 0
    if count_exposure:
        # +1 at each entry, -1 after each exit: bars with a positive running sum hold a position.
        steps = np.bincount(entries, minlength=bars) - np.bincount(exits + 1, minlength=bars + 1)[:bars]
        exposed_bars = int(np.count_nonzero(np.cumsum(steps) > 0))

    pnl = size * (exit_price - entry_price) - commission
    returns = np.copysign(1.0, size) * (exit_price / entry_price - 1) - commission / (np.abs(size) * entry_price)
    winners, losers = pnl[pnl > 0], pnl[pnl < 0]
    win_rate = len(winners) / count
    gains = float(returns[returns > 0].sum())
    losses = abs(float(returns[returns < 0].sum()))
    average_win = float(winners.sum()) / len(winners) if len(winners) else _NAN
    average_loss = -(float(losers.sum()) / len(losers)) if len(losers) else _NAN
    pnl_mean = float(pnl.sum()) / count
    pnl_deviation = math.sqrt(_sample_variance(pnl)) if count > 1 else _NAN
    return _TradeFigures(
        count=count,
        commissions=float(commission.sum()),
        exposed_bars=exposed_bars,
        win_rate=win_rate,
        best=float(returns.max()),
        worst=float(returns.min()),
        geometric_mean=_geometric_mean(returns),
        max_duration=int(durations.max()),
        # pandas averages durations in float64 and truncates to whole microseconds before rounding up
        mean_duration=int(float(durations.sum()) / count),
        profit_factor=_divide(gains, losses or _NAN),
        expectancy=float(returns.sum()) / count,
        sqn=_divide(math.sqrt(count) * pnl_mean, pnl_deviation or _NAN),
        kelly=win_rate - _divide(1 - win_rate, _divide(average_win, average_loss)),
    )


def _validated(
    equity: np.ndarray,
    timestamps: np.ndarray,
    prices: np.ndarray,
    risk_free_rate: float,
    position_bars: np.ndarray | None,
    warmup_bars: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 1 or len(equity) == 0:
        raise ValidationError(f"equity must be a non-empty 1-d array, was of shape {equity.shape}")
    bars = len(equity)
    finite = np.isfinite(equity)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValidationError(f"equity must be finite, was {equity[bad]} at bar {bad}")
    if equity[0] <= 0:
        raise ValidationError(f"equity must start positive, was {equity[0]} at bar 0")
    timestamps = np.asarray(timestamps)
    if timestamps.dtype.kind not in "iu" or timestamps.shape != (bars,):
        raise ValidationError(
            f"timestamps must be {bars} integer microseconds (one per equity bar), "
            f"were of dtype {timestamps.dtype} and shape {timestamps.shape}"
        )
    timestamps = timestamps.astype(np.int64, copy=False)
    steps = np.diff(timestamps)
    if (steps <= 0).any():
        bad = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise ValidationError(
            f"timestamps must strictly increase, bar {bad} is at {timestamps[bad]} after {timestamps[bad - 1]}"
        )
    closes = np.asarray(prices, dtype=np.float64)
    if closes.ndim not in (1, 2) or closes.shape[0] != bars or closes.size == 0:
        raise ValidationError(f"prices must have shape ({bars},) or ({bars}, symbols), was {closes.shape}")
    if closes.ndim == 1:
        closes = closes[:, None]
    impossible = np.isinf(closes) | (closes <= 0)
    if impossible.any():
        bar, column = (int(index) for index in np.argwhere(impossible)[0])
        raise ValidationError(
            f"prices must be positive or NaN, was {closes[bar, column]} at bar {bar}, column {column}"
        )
    if not (isinstance(risk_free_rate, (int, float)) and -1 < risk_free_rate < 1):
        raise ValidationError(f"risk_free_rate must be a fraction in (-1, 1), was {risk_free_rate!r}")
    if isinstance(warmup_bars, bool) or not isinstance(warmup_bars, (int, np.integer)) or not 0 <= warmup_bars < bars:
        raise ValidationError(f"warmup_bars must be an integer in [0, {bars}), was {warmup_bars!r}")
    mask = None
    if position_bars is not None:
        mask = np.asarray(position_bars)
        if mask.dtype != np.bool_ or mask.shape != (bars,):
            raise ValidationError(
                f"position_bars must be {bars} booleans (one per equity bar), "
                f"were of dtype {mask.dtype} and shape {mask.shape}"
            )
    return equity, timestamps, closes, mask


def _bar_period(timestamps: np.ndarray) -> int | None:
    """Median spacing of the last 100 bars in microseconds, truncated, as backtesting.py's `_data_period`."""
    steps = np.diff(timestamps[-_PERIOD_BARS:])
    if len(steps) == 0:
        return None
    middle = len(steps) // 2
    ordered = np.partition(steps, [middle - 1, middle] if len(steps) % 2 == 0 else [middle])
    if len(steps) % 2:
        return int(ordered[middle])
    return int((int(ordered[middle - 1]) + int(ordered[middle])) // 2)


def _resolution(period: int | None) -> int:
    """The finest non-zero unit of `period` (a day, an hour, ...), the unit durations are rounded up to."""
    if period is None:
        return 1
    for unit in _RESOLUTIONS:
        if period % unit == 0:
            return unit
    return 1


def _annualisation(timestamps: np.ndarray, period: int | None) -> tuple[int, np.ndarray]:
    """Periods per year and the key of the calendar period (UTC) each bar falls in."""
    days = timestamps // _MICROSECONDS_PER_DAY
    period_days = None if period is None else period // _MICROSECONDS_PER_DAY
    if period_days == 7:
        return 52, (days + 3) // 7  # weeks from Monday to Sunday; 1970-01-01 was a Thursday
    if period_days == 31:
        return 12, timestamps.astype("datetime64[us]").astype("datetime64[M]").view(np.int64)
    if period_days == 365:
        return 1, timestamps.astype("datetime64[us]").astype("datetime64[Y]").view(np.int64)
    weekend_share = np.count_nonzero((days + 3) % 7 >= 5) / len(days)
    return (365 if weekend_share > 2 / 7 * 0.6 else 252), days


def _geometric_mean(returns: np.ndarray) -> float:
    """backtesting.py's geometric mean: 0 if any return loses everything, NaN without any return."""
    growth = returns + 1
    if (growth <= 0).any():
        return 0.0
    return float(np.exp(np.log(growth).sum() / len(returns)) - 1) if len(returns) else _NAN


def _drawdown_episodes(drawdown: np.ndarray, timestamps: np.ndarray) -> tuple[float, int | None, int | None]:
    """Mean peak drawdown, longest and mean drawdown span in microseconds.

    An episode runs from a bar at a new equity high to the next one (or to the last bar), when at least one
    bar lies between them, as in backtesting.py's `compute_drawdown_duration_peaks`.
    """
    highs = np.flatnonzero(drawdown == 0)
    last = len(drawdown) - 1
    ends = np.append(highs[1:], last) if highs[-1] != last else highs[1:]
    starts = highs[: len(ends)]
    episode = ends > starts + 1
    if not episode.any():
        # backtesting.py then averages the non-zero drawdowns, which can only be the last bar's, and reports
        # that fraction as a duration too; a fraction is no duration, so the spans are undefined here.
        in_drawdown = drawdown[drawdown != 0]
        return (float(in_drawdown.mean()) if len(in_drawdown) else _NAN), None, None
    starts, ends = starts[episode], ends[episode]
    peaks = np.maximum.reduceat(drawdown[: ends[-1] + 1], starts)
    spans = timestamps[ends] - timestamps[starts]
    return float(peaks.sum()) / len(peaks), int(spans.max()), int(float(spans.sum()) / len(spans))


def _buy_and_hold(closes: np.ndarray, warmup_bars: int) -> tuple[float, np.ndarray]:
    """Equal-weight Buy & Hold return in percent, and the market series beta is measured against."""
    valid = ~np.isnan(closes)
    if valid.all():
        first = closes[warmup_bars]
        returns = (closes[-1] - first) / first * 100
        if closes.shape[1] == 1:
            return float(returns[0]), closes[:, 0]
        filled = closes
        references = first
    else:
        bars = len(closes)
        # A symbol without a close after the warm-up could not be bought: it takes no part.
        held = valid[warmup_bars:].any(axis=0)
        if not held.any():
            return _NAN, np.full(bars, _NAN)
        closes, valid = closes[:, held], valid[:, held]
        # Carry each symbol's last close forward, and its first close back, so gaps add no return.
        positions = np.where(valid, np.arange(bars)[:, None], -1)
        np.maximum.accumulate(positions, axis=0, out=positions)
        positions = np.where(positions < 0, valid.argmax(axis=0), positions)
        columns = np.arange(closes.shape[1])
        filled = closes[positions, columns]
        references = closes[valid[warmup_bars:].argmax(axis=0) + warmup_bars, columns]
        returns = (filled[-1] - references) / references * 100
        if closes.shape[1] == 1:
            return float(returns[0]), filled[:, 0]
    return float(returns.mean()), (filled / references).mean(axis=1)


def _beta(growth_per_bar: np.ndarray, market: np.ndarray) -> float:
    """Slope of the equity's log returns on the market's, as backtesting.py's beta."""
    if len(growth_per_bar) < 2:
        return _NAN
    equity_returns = np.log(growth_per_bar)
    market_returns = np.log(market[1:] / market[:-1])
    count = len(equity_returns)
    equity_returns = equity_returns - equity_returns.sum() / count
    market_returns = market_returns - market_returns.sum() / count
    return _divide(float(equity_returns @ market_returns), float(market_returns @ market_returns))


def _tail_risk(returns: np.ndarray) -> tuple[float, float]:
    """Historical 95 % value at risk and expected shortfall of per-bar returns, as positive percent losses."""
    count = len(returns)
    if count == 0:
        return _NAN, _NAN
    # numpy's default ("linear") quantile, by partial sorting around the two order statistics it interpolates
    position = (count - 1) * _TAIL_PROBABILITY
    below = int(position)
    above = min(below + 1, count - 1)
    ordered = np.partition(returns, [below, above])
    quantile = float(ordered[below] + (ordered[above] - ordered[below]) * (position - below))
    tail = returns[returns <= quantile]  # empty only when a zero equity made returns NaN
    return -quantile * 100, (-float(tail.sum()) / len(tail) * 100 if len(tail) else _NAN)


def _sample_variance(values: np.ndarray) -> float:
    """Variance with one degree of freedom removed, summed as pandas sums it."""
    deviations = values - values.sum() / len(values)
    return float(np.square(deviations).sum()) / (len(values) - 1)


def _days(span: int | None, resolution: int) -> float:
    """`span` microseconds rounded up to the bar period's resolution, in days, as backtesting.py shows them."""
    if span is None:
        return _NAN
    return -(-span // resolution) * resolution / _MICROSECONDS_PER_DAY


def _divide(numerator: float, denominator: float) -> float:
    """Division with numpy's rules (x/0 is ±inf, 0/0 NaN), which backtesting.py's figures inherit."""
    if denominator == 0:
        if numerator == 0 or math.isnan(numerator):
            return _NAN
        return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)
    return numerator / denominator
