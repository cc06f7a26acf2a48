"""Self-contained HTML report of the learning loop: does the memory gate help, and what has it learnt?

For each base strategy and symbol with a stored ungated run and stored ``gated:<base>`` runs on the same bars,
the page shows the statistics `tasks.learning_report` computed (`neuraltrade.research.evaluation` and
`neuraltrade.research.meta_labels`): the gated-minus-ungated Sharpe difference with its one-sided lower bound,
Hansen's SPA p-value over the gated variants, the Deflated Sharpe Ratio, the meta-label confusion matrix and
the Brier score of the gate's probability; and three kinds of plot, drawn here as static inline SVG (no
script): equity curves base against gated, mean regret per counterfactual alternative, and the latest
distillation's patterns as a forest plot of their intervals against the base rate.

The page loads nothing: its Content-Security-Policy allows no fetch and no script, and only its own stylesheet
(the run report's, `neuraltrade.research.report_assets.STYLE`, plus a few rules), admitted by hash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.canonical import format_microseconds
from neuraltrade.formatting import format_money, format_ratio, format_time
from neuraltrade.research.report import _escape, _sha256, downsample_indices
from neuraltrade.research.report_assets import STYLE

_MICROSECONDS_PER_DAY = 86_400_000_000
#: Most points of one equity line drawn (min/max decimation, as the run report does).
MAX_LINE_POINTS = 1_200
#: Line colours: the base first (grey), then each gated variant.
_COLOURS = ("#616e7c", "#1f4e9c", "#7b3294", "#e08214", "#1a9850")
_UP, _DOWN = "#1a9850", "#d73027"
_EXTRA_STYLE = """
section.comparison { border-top: 1px solid var(--frame); margin-top: 18px; }
p.note { color: var(--muted); font-size: 12px; margin: 2px 0; }
svg.static { display: block; max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg.static text { fill: var(--muted); }
table.confusion td, table.confusion th { text-align: right; }
"""
_PAGE_STYLE = STYLE + _EXTRA_STYLE


@dataclass(frozen=True, kw_only=True)
class RunCurve:
    """One stored run as the report shows it: its identity, its equity at the end of each day (`days` are
    int64 epoch microseconds of each day's last bar) and its counterfactual summary
    (`neuraltrade.learning.counterfactual.summarise_counterfactuals` rows; empty if none were simulated)."""

    run_id: str
    strategy: str
    strategy_id: str
    days: np.ndarray
    equity: np.ndarray
    regret: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, kw_only=True)
class VariantEvaluation:
    """One gated run against its base: each statistic's result dict, or None with a note saying why not."""

    run: RunCurve
    difference: Mapping[str, Any] | None = None
    deflated: Mapping[str, Any] | None = None
    confusion: Mapping[str, Any] | None = None
    brier: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A base run and every gated variant of it on the same bars, with the SPA test over the variants."""

    base_strategy: str
    symbols: Sequence[str]
    data_digest: str
    base: RunCurve
    variants: Sequence[VariantEvaluation]
    spa: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class PatternForest:
    """The latest distillation of one strategy (by strategy id) and its patterns, as plain rows (keys of
    `tasks.learning_report.pattern_row`: rank, side, probability, interval_low, interval_high, trials...)."""

    strategy: str
    as_of: datetime
    base_rate: float | None
    episodes: int
    patterns: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True)
class LearningReportData:
    """Everything the learning report shows; `runs` and `registry_trials` are what the Deflated Sharpe Ratio
    counted as trials (every stored run, and every trial of the registry)."""

    database: str
    generated_at: datetime
    comparisons: Sequence[Comparison]
    patterns: Sequence[PatternForest]
    runs: int
    registry_trials: int


def daily_curve(timestamps: np.ndarray, equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The equity at the last bar of each UTC day, with that bar's timestamp (daily bars come back as they are)."""
    stamps = np.asarray(timestamps, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    if len(stamps) == 0:
        return stamps, values
    day = stamps // _MICROSECONDS_PER_DAY
    last = np.flatnonzero(np.append(day[1:] != day[:-1], True))
    return stamps[last], values[last]


def daily_returns(equity: np.ndarray) -> np.ndarray:
    """Simple returns between consecutive daily equities (one fewer than days); a zero equity's next return is 0."""
    values = np.asarray(equity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(values[:-1] != 0, values[1:] / values[:-1] - 1.0, 0.0)
    return np.asarray(returns, dtype=np.float64)


# -- the page -------------------------------------------------------------------------------------------


def render_learning_report(data: LearningReportData) -> str:
    """Return the learning report of `data` as one self-contained HTML page (no script, no URL)."""
    policy = f"default-src 'none'; base-uri 'none'; form-action 'none'; style-src '{_sha256(_PAGE_STYLE)}'"
    stamp = format_time(data.generated_at)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>Learning report · {_escape(stamp)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n",
        "<header>\n<h1>Learning report: does the memory gate help?</h1>\n",
        '<dl class="meta">\n',
        f"<dt>Database</dt><dd>{_escape(data.database)}</dd>\n<dt>Generated</dt><dd>{_escape(stamp)}</dd>\n",
        f"<dt>Comparisons</dt><dd>{len(data.comparisons):,} (base strategy and symbols with a gated run on the "
        "same bars)</dd>\n",
        f"<dt>Trials counted</dt><dd>{data.runs + data.registry_trials:,}: every stored backtest run "
        f"({data.runs:,}) and every trial of the registry ({data.registry_trials:,}), for the Deflated Sharpe "
        "Ratio</dd>\n</dl>\n",
        _method(),
        "</header>\n<main>\n",
    ]
    if not data.comparisons:
        parts.append(
            "<p>No comparison yet: no stored base run has a stored <code>gated:&lt;base&gt;</code> run on the same "
            "bars. The nightly backtests both (<code>neuraltrade nightly</code>).</p>\n"
        )
    parts.extend(_comparison(comparison) for comparison in data.comparisons)
    parts.append('<section class="table"><h2>Patterns of the latest distillations</h2>\n')
    if not data.patterns:
        parts.append("<p>No distillation stored yet.</p>\n")
    parts.extend(_forest_section(forest) for forest in data.patterns)
    parts.append("</section>\n</main>\n</body>\n</html>\n")
    return "".join(parts)


def _method() -> str:
    items = [
        "Returns are daily: each run's equity at the last bar of each UTC day, paired by day.",
        "Sharpe difference: gated minus ungated, annualised (252 days), with a one-sided 95 % lower bound from a "
        "studentized stationary bootstrap (arch; Politis-White block length).",
        "SPA: Hansen's test (arch), the ungated run as benchmark, every gated variant on the same bars as a model; "
        "the consistent p-value is shown.",
        "Deflated Sharpe Ratio of each gated run: every stored run and every registry trial counts as a trial.",
        "Confusion matrix: each judged entry of the ungated run; vetoed when the gated run has no trade of the same "
        "symbol, side and entry time; success is the judge's verdict on the ungated episode.",
        "Brier score: the gate's probability of success as its signals recorded it (feature gate_probability of "
        "each gated decision at the entry's decision time) against the same verdicts; entries vetoed from flat "
        "leave no signal and are not scored. The reference forecasts the scored entries' own success share.",
    ]
    return '<ul class="method">' + "".join(f"<li>{_escape(item)}</li>" for item in items) + "</ul>\n"


def _comparison(comparison: Comparison) -> str:
    symbols = ", ".join(comparison.symbols)
    heading = f"{comparison.base_strategy} on {symbols}"
    curves = [("ungated " + comparison.base.strategy_id, comparison.base.days, comparison.base.equity)]
    curves.extend((variant.run.strategy_id, variant.run.days, variant.run.equity) for variant in comparison.variants)
    parts = [
        f'<section class="comparison"><h2>{_escape(heading)}</h2>\n',
        f'<p class="note">ungated run {_escape(comparison.base.run_id)}; bars '
        f"<code>{_escape(comparison.data_digest[:16])}</code></p>\n",
        *(f'<p class="note">{_escape(note)}</p>\n' for note in comparison.notes),
        line_chart_svg(curves, title="Equity: ungated and gated"),
        _statistics(comparison),
    ]
    for variant in comparison.variants:
        parts.append(f"<h3>{_escape(variant.run.strategy_id)} · run {_escape(variant.run.run_id)}</h3>\n")
        parts.extend(f'<p class="note">{_escape(note)}</p>\n' for note in variant.notes)
        if variant.confusion is not None:
            parts.append(_confusion(variant.confusion))
    for run in (comparison.base, *(variant.run for variant in comparison.variants)):
        if run.regret:
            parts.append(regret_section(run.regret, heading=f"Counterfactual regret · {run.strategy_id}"))
    parts.append("</section>\n")
    return "".join(parts)


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):,.{digits}f}"


def _interval(pair: Any) -> str:
    if pair is None:
        return "n/a"
    low, high = pair
    return f"[{_number(low)}, {_number(high)}]"


def _statistics(comparison: Comparison) -> str:
    headings = (
        "Variant",
        "Sharpe gated",
        "Sharpe ungated",
        "Difference",
        "95 % lower bound",
        "Days",
        "DSR",
        "Brier (reference)",
        "Brier skill",
    )
    rows = []
    for variant in comparison.variants:
        difference, deflated, brier = variant.difference or {}, variant.deflated or {}, variant.brier or {}
        brier_text = (
            f"{_number(brier.get('brier'))} ({_number(brier.get('reference_brier'))})" if variant.brier else "n/a"
        )
        cells = [
            variant.run.strategy_id,
            format_ratio(difference.get("treated_sharpe")),
            format_ratio(difference.get("base_sharpe")),
            format_ratio(difference.get("estimate")),
            format_ratio(difference.get("lower_bound")),
            str(difference.get("days", "n/a")),
            _number(deflated.get("dsr")),
            brier_text,
            _number(brier.get("skill")),
        ]
        rows.append("<tr>" + "".join(f"<td>{_escape(cell)}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{_escape(heading)}</th>" for heading in headings)
    spa = comparison.spa
    spa_text = (
        f"Hansen's SPA over {spa['variants']} gated variant(s) against the ungated run: p = "
        f"{_number(spa['consistent'])} (consistent; lower {_number(spa['lower'])}, upper {_number(spa['upper'])})"
        if spa
        else "Hansen's SPA: not computed"
    )
    return (
        f'<table class="statistics">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + f'\n</tbody></table>\n<p class="note">{_escape(spa_text)}</p>\n'
    )


def _confusion(confusion: Mapping[str, Any]) -> str:
    cells = [
        ("Winners", confusion["winners_kept"], confusion["winners_vetoed"]),
        ("Losers", confusion["losers_kept"], confusion["losers_vetoed"]),
    ]
    body = "".join(
        f'<tr><th scope="row">{label}</th><td>{kept:,}</td><td>{vetoed:,}</td></tr>' for label, kept, vetoed in cells
    )
    summary = (
        f"base rate {_number(confusion['base_rate'])} {_interval(confusion.get('base_rate_interval'))}; "
        f"precision of the kept {_number(confusion['precision'])} {_interval(confusion.get('precision_interval'))}; "
        f"lift {_number(confusion['lift'])}; losers among the vetoed {_number(confusion['veto_precision'])} "
        f"{_interval(confusion.get('veto_precision_interval'))} (Wilson {confusion.get('confidence', 0.95):.0%})"
    )
    return (
        '<table class="confusion"><thead><tr><th></th><th>Kept</th><th>Vetoed</th></tr></thead>'
        f'<tbody>{body}</tbody></table>\n<p class="note">{_escape(summary)}</p>\n'
    )


def _forest_section(forest: PatternForest) -> str:
    base = "unknown" if forest.base_rate is None else _number(forest.base_rate)
    caption = (
        f"{forest.strategy}: distillation as of {format_time(forest.as_of)}, {forest.episodes:,} episodes, "
        f"{len(forest.patterns):,} patterns, base rate {base}"
    )
    rows = [
        (
            f"#{row['rank']} {row['side']} {row['wins']}/{row['trials']}",
            float(row["interval_low"]),
            float(row["probability"]),
            float(row["interval_high"]),
        )
        for row in forest.patterns
    ]
    plot = forest_plot_svg(rows, reference=forest.base_rate, title=caption) if rows else ""
    return f"<h3>{_escape(caption)}</h3>\n{plot}"


# -- the regret panel (also drawn by the run report) ------------------------------------------------------


def regret_section(rows: Sequence[Mapping[str, Any]], *, heading: str = "Counterfactual regret") -> str:
    """The regret panel: mean regret per alternative as a bar chart, and the summary table.

    `rows` are `summarise_counterfactuals` rows (alternative, trades, mean_regret, total_regret, better_share);
    a positive regret means the alternative would have made more than the action taken.
    """
    chart = bar_chart_svg([(str(row["alternative"]), float(row["mean_regret"])) for row in rows], title=heading)
    head = "".join(
        f"<th>{name}</th>" for name in ("Alternative", "Trades", "Mean regret", "Total regret", "Alternative better")
    )
    body = "\n".join(
        f'<tr><td>{_escape(row["alternative"])}</td><td class="number">{int(row["trades"]):,}</td>'
        f'<td class="number">{_escape(format_money(row["mean_regret"]))}</td>'
        f'<td class="number">{_escape(format_money(row["total_regret"]))}</td>'
        f'<td class="number">{float(row["better_share"]):.0%}</td></tr>'
        for row in rows
    )
    note = (
        '<p class="note">Regret = what the alternative would have made minus what the trade made, in cash, net of '
        "costs, each alternative re-simulated by the backtest engine on the same bars: above 0, the alternative "
        "was better.</p>\n"
    )
    return (
        f'<section class="table regret"><h2>{_escape(heading)}</h2>\n{chart}{note}'
        f'<table class="regret"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n</section>\n'
    )


# -- static SVG plots -----------------------------------------------------------------------------------


def _svg_open(width: int, height: int, title: str, css: str) -> str:
    return (
        f'<svg class="static {css}" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{_escape(title)}</title>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" dominant-baseline="middle">{_escape(text)}</text>'


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not high > low:
        return [low]
    rough = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= rough)
    first = math.ceil(low / step) * step
    return [first + index * step for index in range(int((high - first) / step) + 1)]


def line_chart_svg(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str, width: int = 900, height: int = 300
) -> str:
    """Lines of (label, epoch-µs times, values) on one time axis, as inline SVG with a legend."""
    drawn = [(label, np.asarray(x, np.int64), np.asarray(y, np.float64)) for label, x, y in series if len(x) > 1]
    if not drawn:
        return '<p class="note">No curve to draw.</p>\n'
    left, right, top, bottom = 80, width - 16, 24 + 14 * len(drawn), height - 24
    start = min(int(x[0]) for _, x, _ in drawn)
    end = max(int(x[-1]) for _, x, _ in drawn)
    finite = np.concatenate([y[np.isfinite(y)] for _, _, y in drawn])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 1.0, high + 1.0
    span = max(end - start, 1)

    def place_x(value: float) -> float:
        return left + (value - start) / span * (right - left)

    def place_y(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - top)

    parts = [_svg_open(width, height, title, "lines")]
    for value in _ticks(low, high):
        position = place_y(value)
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{position:.1f}" y2="{position:.1f}"/>')
        parts.append(_text(left - 6, position, f"{value:,.0f}", "end"))
    stamps = np.linspace(start, end, 6).astype(np.int64)
    for stamp, label in zip(stamps, format_microseconds([int(value) for value in stamps]), strict=True):
        parts.append(_text(place_x(float(stamp)), bottom + 14, label[:10], "middle"))
    parts.append(f'<rect class="frame" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>')
    for number, (label, x, y) in enumerate(drawn):
        colour = _COLOURS[number % len(_COLOURS)]
        kept = downsample_indices(y, MAX_LINE_POINTS)
        points = " ".join(
            f"{place_x(float(x[index])):.1f},{place_y(float(y[index])):.1f}" for index in kept if np.isfinite(y[index])
        )
        dash = ' stroke-dasharray="4 3"' if number == 0 else ""
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{points}" '
            f'data-label="{_escape(label)}" data-points="{len(kept)}"/>'
        )
        legend_y = 10 + 14 * number
        parts.append(f'<line x1="{left}" x2="{left + 18}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}"{dash}/>')
        parts.append(_text(left + 24, legend_y, f"{label} (last {format_money(float(y[-1]))})"))
    parts.append("</svg>\n")
    return "".join(parts)


def bar_chart_svg(rows: Sequence[tuple[str, float]], *, title: str, width: int = 640) -> str:
    """Horizontal bars of signed values around a zero line (positive red: the alternative did better)."""
    if not rows:
        return '<p class="note">Nothing to draw.</p>\n'
    row_height, top, label_width = 22, 8, 130
    height = top + row_height * len(rows) + 24
    left, right = label_width, width - 90
    values = [value for _, value in rows]
    low, high = min(0.0, *values), max(0.0, *values)
    if high <= low:
        high = low + 1.0

    def place(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    zero = place(0.0)
    parts = [_svg_open(width, height, title, "bars")]
    for number, (label, value) in enumerate(rows):
        y = top + number * row_height
        start, end = sorted((zero, place(value)))
        colour = _DOWN if value > 0 else _UP
        parts.append(_text(label_width - 8, y + row_height / 2, label, "end"))
        parts.append(
            f'<rect x="{start:.1f}" y="{y + 3}" width="{max(end - start, 0.5):.1f}" height="{row_height - 6}" '
            f'fill="{colour}" data-alternative="{_escape(label)}" data-value="{value:.6g}"/>'
        )
        parts.append(_text(max(zero, place(value)) + 6, y + row_height / 2, format_money(value)))
    bottom = top + row_height * len(rows)
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top}" y2="{bottom}" stroke="#3e4c59"/>')
    parts.append(_text(zero, bottom + 12, "0 (mean regret, cash)", "middle"))
    parts.append("</svg>\n")
    return "".join(parts)


def forest_plot_svg(
    rows: Sequence[tuple[str, float, float, float]], *, reference: float | None, title: str, width: int = 640
) -> str:
    """A forest plot on [0, 1]: per row (label, low, point, high) an interval with its point, and a dashed
    vertical line at `reference` (the base rate)."""
    row_height, top, label_width = 20, 8, 150
    height = top + row_height * max(len(rows), 1) + 26
    left, right = label_width, width - 20

    def place(value: float) -> float:
        return left + min(max(value, 0.0), 1.0) * (right - left)

    bottom = top + row_height * len(rows)
    parts = [_svg_open(width, height, title, "forest")]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = place(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>')
        parts.append(_text(x, bottom + 12, f"{tick:g}", "middle"))
    if reference is not None and math.isfinite(reference):
        x = place(reference)
        parts.append(
            f'<line class="base-rate" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{_DOWN}" '
            'stroke-dasharray="4 3"/>'
        )
    for number, (label, low, point, high) in enumerate(rows):
        y = top + number * row_height + row_height / 2
        colour = _UP if reference is not None and low > reference else _DOWN if reference and high < reference else ""
        stroke = colour or "#3e4c59"
        parts.append(_text(label_width - 8, y, label, "end"))
        parts.append(
            f'<line class="interval" x1="{place(low):.1f}" x2="{place(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{stroke}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{place(point):.1f}" cy="{y:.1f}" r="3.5" fill="{stroke}"/>')
    parts.append(_text(left, bottom + 24, "probability of success (interval, posterior mean); dashed: base rate"))
    parts.append("</svg>\n")
    return "".join(parts)
