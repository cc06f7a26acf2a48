"""Self-contained HTML report of one backtest run: equity, drawdown, trades on price, statistics, trades.

The page needs nothing but a browser and can be mailed or archived as it is: CSS and a small vanilla script
are inline, the data is embedded as JSON, and its Content-Security-Policy allows no fetch at all and runs
only the report's own script and style (by hash), so even text that slipped past escaping could not execute.
The script draws the charts as SVG; when it is done it sets ``document.body.dataset.rendered`` to the charts
drawn (``"equity,drawdown,price:NVDA"``) or, on any exception, to ``"error"`` with the message in ``#error``.

Long series are reduced in Python to the first and last bar plus the lowest and highest value of each of
about 2,000 equal buckets (min/max decimation), so every peak and trough of a 100,000-bar run stays visible
at a few thousand points.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.canonical import format_microseconds
from neuraltrade.errors import ValidationError
from neuraltrade.formatting import (
    format_fraction_as_percent,
    format_money,
    format_percent,
    format_price,
    format_quantity,
    format_setting,
    format_statistic,
    format_time,
    plain_setting,
)
from neuraltrade.research.report_assets import SCRIPT, STYLE

#: Most points of one series embedded in the page; longer series are decimated to min/max per bucket.
MAX_POINTS = 4_000
_MICROSECONDS_PER_DAY = 86_400_000_000
_TRADE_KEYS = frozenset(
    {"symbol", "entry_bar", "exit_bar", "entry_price", "exit_price", "size", "pnl", "return_pct", "exit_reason"}
)


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything a report shows about one run; arrays hold one value per bar of the run's timeline.

    `strategy` is the strategy's name and `parameters` its configuration, both shown in the header with
    the symbols (those of `prices`), the period, the starting `cash`, the relative `commission` per fill
    and the `sizing` (None: all in, backtesting.py's default); `config` is everything that configured the
    run, shown whole at the end. `timestamps` are int64 microseconds since the epoch (UTC), strictly
    increasing; `drawdown_pct` is positive percent below the running peak; `prices` maps each symbol to
    its close per bar (NaN where it has none); each trade maps ``symbol, entry_bar, exit_bar, entry_time,
    exit_time, size, entry_price, exit_price, pnl, return_pct, exit_reason`` (a negative size is a short,
    `exit_bar` None an open trade).
    """

    run_id: str
    strategy: str
    strategy_id: str = ""
    parameters: Mapping[str, Any]
    cash: float
    commission: float
    sizing: Mapping[str, Any] | None = None
    config: Mapping[str, Any]
    config_digest: str
    statistics: Mapping[str, Any]
    timestamps: np.ndarray
    equity: np.ndarray
    drawdown_pct: np.ndarray
    prices: Mapping[str, np.ndarray]
    trades: Sequence[Mapping[str, Any]]
    #: The run's counterfactual summary (`neuraltrade.learning.counterfactual.summarise_counterfactuals` rows);
    #: when given, the report shows a regret panel.
    regret: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        where = f"report of run {self.run_id!r}"
        bars = len(self.timestamps)
        if bars == 0:
            raise ValidationError(f"{where}: the run has no bars")
        steps = np.flatnonzero(np.diff(np.asarray(self.timestamps, dtype=np.int64)) <= 0)
        if steps.size:
            raise ValidationError(f"{where}: timestamps do not increase at bar {int(steps[0]) + 1}")
        series = {"equity": self.equity, "drawdown_pct": self.drawdown_pct}
        series.update({f"prices[{symbol!r}]": values for symbol, values in self.prices.items()})
        for name, values in series.items():
            if np.shape(values) != (bars,):
                raise ValidationError(f"{where}: {name} has shape {np.shape(values)}, the run has {bars} bars")
        for name in ("equity", "drawdown_pct"):
            bad = np.flatnonzero(~np.isfinite(np.asarray(series[name], dtype=np.float64)))
            if bad.size:
                raise ValidationError(f"{where}: {name} is not finite at bar {int(bad[0])}")
        for number, trade in enumerate(self.trades):
            missing = sorted(_TRADE_KEYS - trade.keys())
            if missing:
                raise ValidationError(f"{where}: trade {number} has no {', '.join(missing)}")
            if trade["symbol"] not in self.prices:
                raise ValidationError(f"{where}: trade {number} is in {trade['symbol']!r}, which has no prices")
            entry, exit_bar = trade["entry_bar"], trade["exit_bar"]
            if not 0 <= entry < bars or not (exit_bar is None or entry <= exit_bar < bars):
                raise ValidationError(
                    f"{where}: trade {number} spans bars {entry} to {exit_bar}, outside the run's 0 to {bars - 1}"
                )


def render_report(data: ReportData) -> str:
    """Return the report of `data` as one self-contained HTML page.

    Parameters
    ----------
    data
        The run to show.

    Returns
    -------
    str
        The page; it references no URL, so it renders the same offline.
    """
    payload, buy_and_hold_drawn = _chart_payload(data)
    symbols = ", ".join(data.prices)
    title = f"Backtest {data.strategy} on {symbols} · {data.run_id}"
    policy = (
        "default-src 'none'; base-uri 'none'; form-action 'none'; "
        f"script-src '{_sha256(SCRIPT)}'; style-src '{_sha256(STYLE)}'"
    )
    legend = '<span class="key equity">Equity</span>' + (
        '<span class="key buy-hold">Buy &amp; hold</span>' if buy_and_hold_drawn else ""
    )
    # The script switches the equity axis between linear and logarithmic (a page opened at #log starts so).
    scale = (
        '<button type="button" class="scale" aria-pressed="false" '
        'title="Draw the equity on a logarithmic axis, where equal moves in percent are equal heights">'
        "Log scale</button>"
    )
    charts = [
        _chart_section("chart-equity", "Equity", legend, scale),
        _chart_section("chart-drawdown", "Drawdown [%]", ""),
        *(
            _chart_section(f"chart-price-{index}", f"Price · {symbol}", _price_legend(data, symbol))
            for index, symbol in enumerate(data.prices)
        ),
    ]
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{_escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n",
        f"<h1>Backtest report: {_escape(data.strategy)} on {_escape(symbols)}</h1>\n",
        _header(data),
        "</header>\n",
        '<div id="error" class="error" role="alert" hidden></div>\n<main>\n',
        *charts,
        "<noscript><p>The charts need JavaScript; the tables below do not.</p></noscript>\n",
        '<section class="table"><h2>Statistics</h2>\n',
        _statistics_table(data.statistics),
        f'</section>\n<section class="table"><h2>Trades ({len(data.trades):,})</h2>\n',
        _trades_table(data.trades),
        "</section>\n",
        _regret_panel(data.regret),
        '<section class="table"><h2>Configuration</h2>\n<pre class="config">',
        _escape(json.dumps(plain_setting(data.config), indent=2, sort_keys=True, default=str)),
        "</pre></section>\n</main>\n",
        f'<script type="application/json" id="report-data">{_embedded_json(payload)}</script>\n',
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _header(data: ReportData) -> str:
    """The run's identity and set-up as a definition list: what was run, on what, when, with what money."""
    stamps = format_microseconds([int(data.timestamps[0]), int(data.timestamps[-1])])
    period = (
        f"{format_time(stamps[0])} to {format_time(stamps[1])} "
        f"({len(data.timestamps):,} bars, {len(data.trades):,} trades)"
    )
    strategy = data.strategy + (f" ({data.strategy_id})" if data.strategy_id else "")
    rows = [
        ("Strategy", _escape(strategy)),
        ("Parameters", _escape(format_setting(data.parameters) or "defaults")),
        ("Symbols", _escape(", ".join(data.prices))),
        ("Period", _escape(period)),
        ("Cash", _escape(format_money(data.cash))),
        ("Commission", _escape(f"{format_fraction_as_percent(data.commission)} of the notional per fill")),
        ("Sizing", _escape(_sizing_text(data.sizing))),
        ("Run", _escape(data.run_id)),
        ("Config digest", f"<code>{_escape(data.config_digest)}</code>"),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>\n" for name, value in rows)
    return f'<dl class="meta">\n{items}</dl>\n'


def _regret_panel(rows: Sequence[Mapping[str, Any]]) -> str:
    """Mean regret per counterfactual alternative, as bars and a table (nothing when none was simulated)."""
    if not rows:
        return ""
    # Imported here: the learning report builds on this module's helpers.
    from neuraltrade.research.learning_report import regret_section

    return regret_section(rows)


def _sizing_text(sizing: Mapping[str, Any] | None) -> str:
    if not sizing:
        return "all in: every entry takes the whole available margin"
    settings = {name: value for name, value in sizing.items() if name != "kind"}
    kind = str(sizing.get("kind", "sizer")).replace("_", " ")
    return f"{kind}: {format_setting(settings)}" if settings else kind


def downsample_indices(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Return sorted indices of at most `max_points` points of `values` that keep its shape on a chart.

    Every index when there are no more than `max_points` values; otherwise the first and last index and,
    in each of ``(max_points - 2) // 2`` equal buckets, the first index of the bucket's lowest and of its
    highest value (NaN ignored; an all-NaN bucket keeps its first index, so a gap stays a gap).
    """
    if max_points < 4:
        raise ValidationError(f"max_points must be at least 4, was {max_points}")
    values = np.asarray(values, dtype=np.float64)
    count = len(values)
    if count <= max_points:
        return np.arange(count)
    buckets = (max_points - 2) // 2
    starts = np.linspace(0, count, buckets + 1).astype(np.int64)[:-1]
    bucket_of = np.repeat(np.arange(buckets), np.diff(np.append(starts, count)))
    finite = np.isfinite(values)
    kept = [np.array([0, count - 1])]
    for filled, reduce in ((np.inf, np.minimum), (-np.inf, np.maximum)):
        candidates = np.where(finite, values, filled)
        extremes = reduce.reduceat(candidates, starts)
        positions = np.flatnonzero(candidates == extremes[bucket_of])
        _, first = np.unique(bucket_of[positions], return_index=True)
        kept.append(positions[first])
    return np.unique(np.concatenate(kept))


def _chart_payload(data: ReportData) -> tuple[dict[str, Any], bool]:
    timestamps = np.asarray(data.timestamps, dtype=np.int64)
    equity = np.asarray(data.equity, dtype=np.float64)
    holding = _buy_and_hold(float(equity[0]), data.prices)
    columns: dict[str, np.ndarray | None] = {
        "equity": equity,
        "buy_hold": holding,
        # Drawn below zero, so the filled area hangs from the running peak.
        "drawdown": -np.asarray(data.drawdown_pct, dtype=np.float64),
        **{
            f"price {number}": np.asarray(values, dtype=np.float64)
            for number, values in enumerate(data.prices.values())
        },
    }
    kept = {name: None if values is None else downsample_indices(values) for name, values in columns.items()}
    series = {name: _series(columns[name], indices) for name, indices in kept.items()}
    trades = [_trade_payload(trade) for trade in data.trades]
    # Times are embedded only for bars some point or trade sits on; the script interpolates between them.
    used = [np.array([0, len(timestamps) - 1]), *(indices for indices in kept.values() if indices is not None)]
    used.append(
        np.array([bar for trade in trades for bar in (trade["entry_bar"], trade["exit_bar"]) if bar is not None])
    )
    bars = np.unique(np.concatenate(used).astype(np.int64))
    milliseconds = timestamps[bars] // 1000
    offsets = milliseconds - milliseconds[0]
    # Steps in the largest common unit (a day for daily bars) keep the embedded times a few digits each.
    unit = int(np.gcd.reduce(offsets)) or 1
    payload = {
        "bars": len(timestamps),
        "intraday": bool(np.any(timestamps % _MICROSECONDS_PER_DAY)),
        "time": {
            "bar_step": np.diff(bars, prepend=0).tolist(),
            "origin_ms": int(milliseconds[0]),
            "unit_ms": unit,
            "step": np.diff(offsets // unit, prepend=0).tolist(),
        },
        "equity": series["equity"],
        "buy_hold": series["buy_hold"],
        "drawdown": series["drawdown"],
        "prices": [
            {"symbol": symbol, **(series[f"price {number}"] or {})} for number, symbol in enumerate(data.prices)
        ],
        "trades": trades,
    }
    return payload, holding is not None


def _buy_and_hold(start: float, prices: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Equity of `start` cash split equally over the priced symbols, each share bought at its first price and held."""
    growth = []
    for values in prices.values():
        values = np.asarray(values, dtype=np.float64)
        priced = np.isfinite(values) & (values > 0)
        if not priced.any():
            continue
        first = int(np.argmax(priced))
        last_priced = np.maximum.accumulate(np.where(priced, np.arange(len(values)), first))
        # A symbol's share is cash until its first price.
        growth.append(np.where(np.arange(len(values)) < first, 1.0, values[last_priced] / values[first]))
    if not growth:
        return None
    return start * np.mean(growth, axis=0)


def _series(values: np.ndarray | None, indices: np.ndarray | None) -> dict[str, list[Any]] | None:
    """Points at `indices` as bar steps (first bar, then differences) and rounded values; None for no series."""
    if values is None or indices is None:
        return None
    return {"bar_step": np.diff(indices, prepend=0).tolist(), "value": _rounded(values[indices])}


def _rounded(values: np.ndarray) -> list[float | None]:
    """`values` to six significant digits of the series' largest value (far finer than a pixel), NaN as None."""
    finite = np.isfinite(values)
    largest = float(np.max(np.abs(values[finite]))) if finite.any() else 0.0
    decimals = max(0, 6 - math.floor(math.log10(largest))) if largest > 0 else 0
    rounded = np.round(np.where(finite, values, 0.0), decimals).tolist()
    return [value if keep else None for value, keep in zip(rounded, finite.tolist(), strict=True)]


def _trade_payload(trade: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "symbol": str(trade["symbol"]),
        "entry_bar": int(trade["entry_bar"]),
        "exit_bar": None if trade["exit_bar"] is None else int(trade["exit_bar"]),
        "size": _number(trade["size"]),
        "entry_price": _number(trade["entry_price"]),
        "exit_price": _number(trade["exit_price"]),
        "pnl": _number(trade["pnl"]),
        "return_pct": _number(trade["return_pct"]),
        "exit_reason": _text(trade["exit_reason"]),
    }


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _embedded_json(payload: Any) -> str:
    """JSON that cannot end its script element or open a comment in it: ``<``, ``>`` and ``&`` as escapes."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _sha256(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _chart_section(element_id: str, heading: str, legend: str, controls: str = "") -> str:
    return (
        f'<section class="chart" id="{element_id}"><h2>{_escape(heading)}<span class="legend">{legend}</span>'
        f"{controls}</h2>"
        '<svg class="plot" role="img"></svg><div class="tooltip" hidden></div></section>\n'
    )


def _price_legend(data: ReportData, symbol: str) -> str:
    # A run of a file that was never ingested has its trades but not its prices.
    unpriced = not np.isfinite(np.asarray(data.prices[symbol], dtype=np.float64)).any()
    note = '<span class="note">no prices stored for these bars: trades only</span>' if unpriced else ""
    traded = any(trade["symbol"] == symbol for trade in data.trades)
    return note + (_trade_legend() if traded else "")


def _trade_legend() -> str:
    return (
        '<span class="key long">long entry</span><span class="key short">short entry</span>'
        '<span class="key win">exit, profit</span><span class="key loss">exit, loss</span>'
    )


def _statistics_table(statistics: Mapping[str, Any]) -> str:
    if not statistics:
        return "<p>No statistics.</p>\n"
    rows = [
        f'<tr><th scope="row">{_escape(_label(key))}</th>'
        f'<td class="number">{_escape(_statistic_text(key, value))}</td></tr>'
        for key, value in statistics.items()
    ]
    return '<table class="statistics">\n' + "\n".join(rows) + "\n</table>\n"


def _trades_table(trades: Sequence[Mapping[str, Any]]) -> str:
    if not trades:
        return "<p>No trades.</p>\n"
    headings = ["#", "Symbol", "Side", "Size", "Entry", "Entry price", "Exit", "Exit price", "P&L", "Return [%]"]
    head = "".join(f"<th>{_escape(heading)}</th>" for heading in [*headings, "Exit reason"])
    rows = []
    for number, trade in enumerate(trades, start=1):
        pnl = _number(trade["pnl"]) or 0.0
        outcome = "win" if pnl > 0 else "loss" if pnl < 0 else "flat"
        size = _number(trade["size"]) or 0.0
        cells = [
            (str(number), "number"),
            (str(trade["symbol"]), ""),
            ("long" if size > 0 else "short", ""),
            (format_quantity(abs(size)), "number"),
            (format_time(trade.get("entry_time")), ""),
            (format_price(trade["entry_price"]), "number"),
            (format_time(trade.get("exit_time")), ""),
            (format_price(trade["exit_price"]), "number"),
            (format_money(trade["pnl"]), "number pnl"),
            (format_percent(trade["return_pct"]), "number pnl"),
            (_text(trade["exit_reason"]), ""),
        ]
        row = "".join(
            f'<td class="{css}">{_escape(text)}</td>' if css else f"<td>{_escape(text)}</td>" for text, css in cells
        )
        rows.append(f'<tr class="{outcome}">{row}</tr>')
    return (
        f'<table class="trades">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>\n"
    )


#: Words of statistic names that read better otherwise (abbreviations, and "ann" for annual).
_WORDS = {"cagr": "CAGR", "sqn": "SQN", "var": "VaR", "cvar": "CVaR", "ann": "(annual)", "hold": "& hold"}


def _label(key: str) -> str:
    words = str(key).split("_")
    unit = ""
    if len(words) > 1 and words[-1] in ("pct", "days"):
        words, unit = words[:-1], " [%]" if words[-1] == "pct" else " [days]"
    sentence = " ".join(_WORDS.get(word, word) for word in words)
    return sentence[:1].upper() + sentence[1:] + unit


def _statistic_text(key: str, value: Any) -> str:
    if isinstance(value, (str, datetime)):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return format_statistic(key, value)
