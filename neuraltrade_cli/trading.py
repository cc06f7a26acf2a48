"""`neuraltrade backtest` and `neuraltrade report`: thin commands over the backtester and the stored runs.

The JSON printed by ``backtest --json`` is a contract scripts depend on: every statistic of
docs/statistics.md at the top level under its snake_case key (``trades`` is the number of closed
trades), the run's identity and set-up (``run_id``, ``commission``, ``stored_in``...), and the closed
trades themselves under ``closed_trades``. Nothing else is printed on stdout with ``--json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from neuraltrade.backtest.config import DEFAULT_COMMISSION
from neuraltrade.formatting import (
    format_fraction_as_percent,
    format_money,
    format_percent,
    format_price,
    format_quantity,
    format_ratio,
    format_setting,
    format_statistic,
    format_time,
)
from neuraltrade.strategies.registry import STRATEGY_NAMES
from neuraltrade_cli.app import DatabaseOption, _Failure, _reporting_failures, _run, app, console, errors

#: The statistics the contract names, in the order the table shows them.
CONTRACT_KEYS = (
    "equity_final",
    "return_pct",
    "buy_hold_return_pct",
    "cagr_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "exposure_pct",
    "profit_factor",
    "expectancy_pct",
    "sqn",
    "kelly",
    "commissions",
)


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """Read ``name=value`` pairs; a malformed or repeated pair is an error naming it."""
    parameters: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip() or not value.strip():
            raise _Failure(f"--param {pair!r} is not name=value (e.g. --param fast=10)")
        if name.strip() in parameters:
            raise _Failure(f"--param {name.strip()!r} is given twice")
        parameters[name.strip()] = value.strip()
    return parameters


#: The ``--strategy`` option of every command that backtests one strategy: its help names them all.
StrategyOption = Annotated[
    str,
    typer.Option(
        "--strategy",
        metavar="NAME",
        help=f"Strategy name: one of {', '.join(STRATEGY_NAMES)}, or gated:NAME to gate it by the learning memory.",
    ),
]
#: The ``--commission`` option, defaulting to the nightly's commission, so that figures agree.
CommissionOption = Annotated[
    float,
    typer.Option(
        "--commission", metavar="FRACTION", help="Relative commission per fill (0.001 = 0.1% of the notional)."
    ),
]


@app.command()
@_reporting_failures
def backtest(
    data: Annotated[
        Path, typer.Option("--data", metavar="FILE", help="Bars to test on: a CSV or Parquet file (Yahoo, OHLCV).")
    ],
    strategy: StrategyOption = "sma_cross",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="KEY=VALUE", help="A strategy parameter (repeatable), e.g. --param fast=10."),
    ] = None,
    cash: Annotated[float, typer.Option("--cash", metavar="AMOUNT", help="Starting cash.")] = 10_000.0,
    commission: CommissionOption = DEFAULT_COMMISSION,
    spread: Annotated[float, typer.Option("--spread", metavar="FRACTION", help="Relative spread paid on entry.")] = 0.0,
    margin: Annotated[
        float, typer.Option("--margin", metavar="FRACTION", help="Margin requirement; 1/margin is the leverage.")
    ] = 1.0,
    trade_on_close: Annotated[bool, typer.Option("--trade-on-close", help="Fill at the decision bar's close.")] = False,
    close_at_end: Annotated[bool, typer.Option("--close-at-end", help="Close open trades after the last bar.")] = False,
    symbol: Annotated[
        str | None, typer.Option("--symbol", metavar="SYMBOL", help="Symbol name (default: from the file).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (a stable contract).")] = False,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Store the run in --db, for `neuraltrade report RUN_ID`.")
    ] = True,
    db: DatabaseOption = None,
) -> None:
    """Backtest one strategy on one file of bars, store the run and print its statistics and trades.

    The run is stored in ``--db`` (migrated first if new) with its trades, equity, signals and orders,
    as the nightly stores its runs, under the id printed: ``neuraltrade report RUN_ID`` draws it. The
    same backtest again stores nothing new. A strategy that reads the market memory (``memory_vote``)
    reads that of ``--db`` (filled by ``neuraltrade nightly`` or ``embed``).
    """
    parameters = parse_parameters(param or [])

    def run() -> Backtested:
        from neuraltrade.backtest import BacktestConfig

        config = BacktestConfig(
            cash=cash,
            commission=commission,
            spread=spread,
            margin=margin,
            trade_on_close=trade_on_close,
            close_at_end=close_at_end,
        )
        return backtest_file(data, strategy, parameters, config, symbol=symbol, database_url=db, store=store)

    outcome = _run(run)
    document = backtest_document(outcome)
    if as_json:
        print(json.dumps(document, allow_nan=False))
        return
    console.print(_statistics_table(document))
    console.print(_trades_table(document["closed_trades"]))
    console.print(_storage_note(outcome, db), highlight=False, soft_wrap=True)


@dataclass(frozen=True, kw_only=True)
class Backtested:
    """A backtest of the command line: its result, its specification (whose run id it is stored under),
    and where it is stored."""

    result: Any
    spec: Any
    #: The database the run is stored in (its password hidden); None when it was not to be stored.
    stored_in: str | None = None
    #: Whether this backtest stored the run (False: it was stored already, or not to be stored).
    newly_stored: bool = False


def backtest_file(
    path: Path,
    strategy_name: str,
    parameters: dict[str, str],
    config: Any,
    *,
    symbol: str | None = None,
    database_url: str | None = None,
    store: bool = True,
) -> Backtested:
    """Backtest strategy `strategy_name` on the bars of `path` and, if `store`, store the run in
    `database_url` (migrated to the newest schema first) through the nightly's own path
    (`tasks.backtesting.run_and_store`)."""
    from neuraltrade.strategies.registry import build_config
    from tasks.backtesting import StrategySpec, run_and_store

    build_config(strategy_name, parameters)  # a bad name or parameter is reported before the file is read
    market, _ = read_market(path, symbol)
    url = None
    if store:
        from models.engine import resolve_database_url
        from models.migrations import upgrade_database

        url = resolve_database_url(database_url)
        upgrade_database(url)  # before the backtest: a database that cannot be written fails at once
    strategy = StrategySpec(name=strategy_name, params=parameters)
    # Not reused when stored already: the command shows the run's result, so it computes it again.
    run = run_and_store(url or database_url, market, strategy, config, store=store, reuse=False)
    if not store:
        return Backtested(result=run.result, spec=run.spec)
    from models.engine import display_url

    assert url is not None
    return Backtested(result=run.result, spec=run.spec, stored_in=display_url(url), newly_stored=run.newly_stored)


def _storage_note(outcome: Backtested, database_url: str | None) -> str:
    run_id = str(outcome.spec.run_id)
    if outcome.stored_in is None:
        return f"not stored (--no-store); stored, it would be run {run_id}"
    how = "stored" if outcome.newly_stored else "already stored"
    draw = f"neuraltrade report {run_id}" + (f" --db {outcome.stored_in}" if database_url else "")
    again = "" if outcome.newly_stored else " (the same backtest as before: nothing written)"
    return f"{how} as run {run_id} in {outcome.stored_in};{again} `{draw}` draws it"


def read_market(path: Path, symbol: str | None = None) -> tuple[Any, int]:
    """Read a bar file into market data, checked as ingestion checks it; return it and the rows left out.

    Rows that cannot be read or fail a quality check are left out with a warning naming how many, the
    first one's line and why; the rest is tested.
    """
    from neuraltrade.backtest import MarketData
    from neuraltrade.errors import FileRejected
    from neuraltrade.market.ingest import read_bars
    from tasks.quality import check_bars

    if not path.exists():
        raise FileRejected(str(path), "no such file")
    parsed = read_bars(path, symbol=symbol)
    frame = parsed.frame
    failures = check_bars(frame) if not frame.empty else {}
    left_out = len(parsed.rejected) + len(failures)
    if left_out:
        if failures:
            first = min(failures)
            where = f"line {int(frame['line'].iloc[first])}: {', '.join(failures[first])}"
        else:
            where = f"line {parsed.rejected[0].line}: {parsed.rejected[0].reason}"
        errors.print(
            f"warning: {path}: {left_out} rows could not be read or failed a check and were left out (first: {where})",
            highlight=False,
            soft_wrap=True,
        )
        frame = frame.drop(index=frame.index[sorted(failures)])
    if frame.empty:
        raise FileRejected(str(path), "holds no bars that pass the checks")
    return MarketData.from_frame(frame), left_out


def backtest_document(outcome: Backtested) -> dict[str, Any]:
    """The JSON object of the CLI contract: statistics at the top level, the run's identity and set-up
    (commission included, and where the run is stored), then the closed trades."""
    result = outcome.result
    statistics = result.statistics.to_dict()
    document: dict[str, Any] = {key: statistics[key] for key in CONTRACT_KEYS}
    document.update({key: value for key, value in statistics.items() if key not in document})
    document.update(
        {
            "strategy": result.strategy.name,
            "strategy_id": result.strategy.strategy_id,
            "parameters": result.strategy.config.to_plain(),
            "symbols": list(result.market.symbols),
            "bars": len(result.market),
            "cash": result.config.cash,
            "commission": result.config.commission,
            "run_id": str(outcome.spec.run_id),
            "config_digest": outcome.spec.config_digest,
            "data_digest": outcome.spec.data_digest,
            "engine_version": outcome.spec.engine_version,
            "stored_in": outcome.stored_in,
            "closed_trades": result.trade_rows(),
        }
    )
    return document


def _statistics_table(document: dict[str, Any]) -> Table:
    parameters = format_setting(document["parameters"]) or "defaults"
    title = (
        f"{document['strategy']} ({parameters}) on {', '.join(document['symbols'])}, {document['bars']:,} bars, "
        f"cash {format_money(document['cash'])}, commission {format_fraction_as_percent(document['commission'])}, "
        "sized all in (as backtesting.py)"
    )
    table = Table(title=title, show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in CONTRACT_KEYS:
        table.add_row(key, format_statistic(key, document[key]))
    for key in ("start", "end", "volatility_ann_pct", "var_95_pct", "cvar_95_pct", "max_drawdown_duration_days"):
        if key in document:
            table.add_row(key, format_statistic(key, document[key]))
    table.add_row("run_id", document["run_id"])
    return table


def _trades_table(trades: list[dict[str, Any]], shown: int = 10) -> Table:
    table = Table(title=f"closed trades ({len(trades)}; last {min(shown, len(trades))} shown)")
    for column in ("entry_time", "exit_time", "size", "entry_price", "exit_price", "pnl", "return_pct"):
        table.add_column(column, justify="left" if column.endswith("time") else "right")
    for trade in trades[-shown:]:
        table.add_row(
            format_time(trade["entry_time"]),
            format_time(trade["exit_time"]),
            format_quantity(trade["size"]),
            format_price(trade["entry_price"]),
            format_price(trade["exit_price"]),
            format_money(trade["pnl"]),
            format_percent(trade["return_pct"]),
        )
    return table


@app.command()
@_reporting_failures
def report(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="A stored backtest run id (see `neuraltrade runs`).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="HTML file to write.")] = None,
    db: DatabaseOption = None,
) -> None:
    """Write a self-contained HTML report of a stored backtest run (equity, drawdown, trades on price)."""
    target = output or Path(f"report-{run_id}.html")
    html = _run(lambda: _render_stored(run_id, db))
    _run(lambda: target.write_text(html, encoding="utf-8"))
    console.print(f"wrote {target} ({target.stat().st_size / 1024:,.0f} KiB)")


def _render_stored(run_id: str, database_url: str | None) -> str:
    from models.engine import read_only_url
    from neuraltrade.research.report import render_report
    from tasks.backtest import report_data

    return render_report(report_data(read_only_url(database_url), run_id))


@app.command()
@_reporting_failures
def runs(
    db: DatabaseOption = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", metavar="NAME", help="Only runs of this strategy.")
    ] = None,
    limit: Annotated[
        int,
        # At most what a database's 64-bit LIMIT takes.
        typer.Option("--limit", min=1, max=2**63 - 1, metavar="COUNT", help="How many runs, newest first."),
    ] = 20,
) -> None:
    """List stored backtest runs, newest first, with their headline figures."""
    overviews = _run(lambda: _list_runs(db, strategy, limit))
    # Every column whole, even past a narrow terminal's edge: `report` needs the whole run id.
    table = Table(title=f"backtest runs ({len(overviews)})", box=None, pad_edge=False, padding=(0, 1))
    table.add_column("run id", no_wrap=True, min_width=36)
    for column in ("strategy", "symbols", "trades", "return %", "sharpe"):
        right = column in ("trades", "return %", "sharpe")
        table.add_column(column, no_wrap=True, justify="right" if right else "left")
    for overview in overviews:
        statistics = overview.statistics
        table.add_row(
            str(overview.id),
            overview.strategy,
            ",".join(overview.symbols),
            format_quantity(statistics.get("trades")),
            format_percent(statistics.get("return_pct")),
            format_ratio(statistics.get("sharpe")),
        )
    _wide().print(table)


def print_backtests(summary: dict[str, Any]) -> None:
    """Print the night's backtests: one row per strategy and symbol, skipped ones with their reason.

    Beside each run's return stand what buying and holding the symbol returned and the share of bars the
    run held a position: a loss in a falling market, or a small gain while out of the market most of the
    time, is then read for what it is.
    """
    columns = ("strategy", "symbol", "trades", "return %", "buy & hold %", "exposure %", "sharpe", "max dd %", "notes")
    table = Table(title="Backtests", box=None, pad_edge=False, padding=(0, 1))
    for column in columns:
        table.add_column(column, no_wrap=True, justify="left" if column in ("strategy", "symbol", "notes") else "right")
    for run in sorted(summary["runs"], key=lambda run: (run["strategy"], run["symbol"])):
        notes = []
        if run.get("out_of_sample_hit_rate") is not None:
            notes.append(f"OOS hit rate {format_ratio(run['out_of_sample_hit_rate'])}")
        if run.get("rejections"):
            notes.append(f"{run['rejections']:,} refused by risk")
        table.add_row(
            run["strategy"],
            run["symbol"],
            format_quantity(run["trades"]),
            format_percent(run["return_pct"]),
            format_percent(run.get("buy_hold_return_pct")),
            format_percent(run.get("exposure_pct")),
            format_ratio(run["sharpe"]),
            format_percent(run["max_drawdown_pct"]),
            "; ".join(notes),
        )
    for run in summary.get("skipped", []):
        table.add_row(run["strategy"], run["symbol"], *[""] * (len(columns) - 3), f"skipped: {run['skipped']}")
    _wide().print(table)
    setup = _backtests_setup(summary)
    if setup:
        console.print(f"every run: {setup}", highlight=False, soft_wrap=True)
    console.print("`neuraltrade runs` lists the runs; `neuraltrade report RUN_ID` draws one.")


def _backtests_setup(summary: dict[str, Any]) -> str:
    """The night's set-up, so that its figures are read with it: commission and sizing."""
    parts = []
    if summary.get("commission") is not None:
        parts.append(f"commission {format_fraction_as_percent(summary['commission'])} per fill")
    sizing = summary.get("sizing")
    if sizing:
        settings = {name: value for name, value in sizing.items() if name != "kind"}
        parts.append(f"sized by {str(sizing.get('kind', 'sizer')).replace('_', ' ')} ({format_setting(settings)})")
    return "; ".join(parts)


def _wide() -> Console:
    """The console, at least 100 columns wide: these tables' rows stay whole past a narrow terminal's edge."""
    return Console(width=max(console.width, 100), file=console.file, force_terminal=console.is_terminal)


def _list_runs(database_url: str | None, strategy: str | None, limit: int) -> list[Any]:
    from models.backtest_runs import list_runs
    from models.engine import read_only_url, session_scope

    with session_scope(read_only_url(database_url)) as session:
        return list_runs(session, limit=limit, strategy=strategy)
