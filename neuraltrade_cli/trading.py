"""`neuraltrade backtest` and `neuraltrade report`: thin commands over the backtester and the stored runs.

The JSON printed by ``backtest --json`` is a contract scripts depend on: every statistic of
docs/statistics.md at the top level under its snake_case key (``trades`` is the number of closed
trades), and the closed trades themselves under ``closed_trades``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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


@app.command()
@_reporting_failures
def backtest(
    data: Annotated[Path, typer.Option("--data", help="Bars to test on: a CSV or Parquet file (Yahoo, OHLCV).")],
    strategy: Annotated[str, typer.Option("--strategy", help="Strategy name, e.g. sma_cross.")] = "sma_cross",
    param: Annotated[list[str] | None, typer.Option("--param", help="A strategy parameter, name=value.")] = None,
    cash: Annotated[float, typer.Option("--cash", help="Starting cash.")] = 10_000.0,
    commission: Annotated[float, typer.Option("--commission", help="Relative commission per fill.")] = 0.0,
    spread: Annotated[float, typer.Option("--spread", help="Relative spread paid on entry.")] = 0.0,
    margin: Annotated[float, typer.Option("--margin", help="Margin requirement; 1/margin is the leverage.")] = 1.0,
    trade_on_close: Annotated[bool, typer.Option("--trade-on-close", help="Fill at the decision bar's close.")] = False,
    close_at_end: Annotated[bool, typer.Option("--close-at-end", help="Close open trades after the last bar.")] = False,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Symbol name (default: from the file).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (a stable contract).")] = False,
    db: DatabaseOption = None,
) -> None:
    """Backtest one strategy on one file of bars and print its statistics and trades.

    ``memory_vote`` reads the market memory of ``--db`` (filled by ``neuraltrade nightly`` or ``embed``).
    """
    parameters = parse_parameters(param or [])

    def run() -> tuple[Any, int]:
        from neuraltrade.backtest import BacktestConfig

        config = BacktestConfig(
            cash=cash,
            commission=commission,
            spread=spread,
            margin=margin,
            trade_on_close=trade_on_close,
            close_at_end=close_at_end,
        )
        return _backtest_file(data, strategy, parameters, config, symbol, db)

    result, _ = _run(run)
    document = backtest_document(result)
    if as_json:
        print(json.dumps(document, allow_nan=False))
        return
    console.print(_statistics_table(document))
    console.print(_trades_table(document["closed_trades"]))


def _backtest_file(
    path: Path,
    strategy_name: str,
    parameters: dict[str, str],
    config: Any,
    symbol: str | None,
    database_url: str | None,
) -> tuple[Any, int]:
    from neuraltrade.backtest import run_backtest
    from neuraltrade.strategies.registry import build_config, build_strategy

    build_config(strategy_name, parameters)  # a bad name or parameter is reported before the file is read
    market, rejected = read_market(path, symbol)
    searcher = None
    if strategy_name == "memory_vote":
        from sqlalchemy.exc import SQLAlchemyError

        from models.collections import CollectionNotFound
        from models.engine import resolve_database_url
        from models.vector_snapshot import snapshot
        from tasks.embed import MARKET_STATE_COLLECTION

        url = resolve_database_url(database_url)
        only = market.symbols[0] if len(market.symbols) == 1 else None
        try:
            searcher = snapshot(url, MARKET_STATE_COLLECTION, only)
        except (CollectionNotFound, SQLAlchemyError):
            raise _Failure(
                f"strategy 'memory_vote' reads the market memory of {url}, which holds none: "
                f"run `neuraltrade nightly --db {url}` (or `ingest` and `embed`) first"
            ) from None
    strategy = build_strategy(strategy_name, parameters, searcher=searcher)
    return run_backtest(market, strategy, config), rejected


def read_market(path: Path, symbol: str | None = None) -> tuple[Any, int]:
    """Read a bar file into market data, checked as ingestion checks it; return it and the rows left out.

    Rows that cannot be read or fail a quality check are left out with a warning naming how many, the
    first one's line and why; the rest is tested.
    """
    from neuraltrade.backtest import MarketData
    from neuraltrade.errors import FileRejected
    from neuraltrade.ingest import read_bars
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


def backtest_document(result: Any) -> dict[str, Any]:
    """The JSON object of the CLI contract: statistics at the top level, then the closed trades."""
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
            "run_id": result.run_id,
            "config_digest": result.config_digest,
            "data_digest": result.data_digest,
            "closed_trades": result.trade_rows(),
        }
    )
    return document


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.2f}"
    return str(value)


def _percent(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.1f}"


def _statistics_table(document: dict[str, Any]) -> Table:
    title = f"{document['strategy_id']} on {', '.join(document['symbols'])} ({document['bars']} bars)"
    table = Table(title=title, show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in CONTRACT_KEYS:
        table.add_row(key, _number(document[key]))
    for key in ("start", "end", "volatility_ann_pct", "var_95_pct", "cvar_95_pct", "max_drawdown_duration_days"):
        if key in document:
            table.add_row(key, _number(document[key]))
    table.add_row("run_id", document["run_id"])
    return table


def _trades_table(trades: list[dict[str, Any]], shown: int = 10) -> Table:
    table = Table(title=f"closed trades ({len(trades)}; last {min(shown, len(trades))} shown)")
    for column in ("entry_time", "exit_time", "size", "entry_price", "exit_price", "pnl", "return_pct"):
        table.add_column(column, justify="left" if column.endswith("time") else "right")
    for trade in trades[-shown:]:
        table.add_row(
            trade["entry_time"][:10],
            trade["exit_time"][:10],
            _number(trade["size"]),
            _number(trade["entry_price"]),
            _number(trade["exit_price"]),
            _number(trade["pnl"]),
            _number(trade["return_pct"]),
        )
    return table


@app.command()
@_reporting_failures
def report(
    run_id: Annotated[str, typer.Argument(help="A stored backtest run id (see `neuraltrade runs`).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write.")] = None,
    db: DatabaseOption = None,
) -> None:
    """Write a self-contained HTML report of a stored backtest run (equity, drawdown, trades on price)."""
    target = output or Path(f"report-{run_id}.html")
    html = _run(lambda: _render_stored(run_id, db))
    _run(lambda: target.write_text(html, encoding="utf-8"))
    console.print(f"wrote {target} ({target.stat().st_size / 1024:,.0f} KiB)")


def _render_stored(run_id: str, database_url: str | None) -> str:
    from neuraltrade.report import render_report
    from tasks.backtest import report_data

    return render_report(report_data(database_url, run_id))


@app.command()
@_reporting_failures
def runs(
    db: DatabaseOption = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="Only runs of this strategy.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs, newest first.")] = 20,
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
            _number(statistics.get("trades")),
            _percent(statistics.get("return_pct")),
            _number(statistics.get("sharpe"), digits=2),
        )
    _wide().print(table)


def print_backtests(summary: dict[str, Any]) -> None:
    """Print the night's backtests: one row per strategy and symbol, skipped ones with their reason."""
    table = Table(title="Backtests", box=None, pad_edge=False, padding=(0, 1))
    for column in ("strategy", "symbol", "trades", "return %", "sharpe", "max dd %", "notes"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("strategy", "symbol", "notes") else "right")
    for run in sorted(summary["runs"], key=lambda run: (run["strategy"], run["symbol"])):
        notes = []
        if run.get("out_of_sample_hit_rate") is not None:
            notes.append(f"OOS hit rate {run['out_of_sample_hit_rate']:.3f}")
        if run.get("rejections"):
            notes.append(f"{run['rejections']:,} refused by risk")
        table.add_row(
            run["strategy"],
            run["symbol"],
            str(run["trades"]),
            _percent(run["return_pct"]),
            _number(run["sharpe"], digits=2),
            _percent(run["max_drawdown_pct"]),
            "; ".join(notes),
        )
    for run in summary.get("skipped", []):
        table.add_row(run["strategy"], run["symbol"], "", "", "", "", f"skipped: {run['skipped']}")
    _wide().print(table)
    console.print("`neuraltrade runs` lists the runs; `neuraltrade report RUN_ID` draws one.")


def _wide() -> Console:
    """The console, at least 100 columns wide: these tables' rows stay whole past a narrow terminal's edge."""
    return Console(width=max(console.width, 100), file=console.file, force_terminal=console.is_terminal)


def _list_runs(database_url: str | None, strategy: str | None, limit: int) -> list[Any]:
    from models.backtest_runs import list_runs
    from models.engine import resolve_database_url, session_scope

    with session_scope(resolve_database_url(database_url)) as session:
        return list_runs(session, limit=limit, strategy=strategy)
