"""`neuraltrade sweep` and `neuraltrade walk-forward`: parameter research on one file of bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from neuraltrade.backtest.config import DEFAULT_COMMISSION
from neuraltrade.formatting import format_fraction_as_percent, format_quantity, format_setting, format_statistic
from neuraltrade_cli.app import DatabaseOption, _Failure, _reporting_failures, _run, app, console
from neuraltrade_cli.trading import CommissionOption, StrategyOption, read_market

DataOption = Annotated[
    Path, typer.Option("--data", metavar="FILE", help="Bars to test on: a CSV or Parquet file (Yahoo, OHLCV).")
]
GridOption = Annotated[
    list[str],
    typer.Option(
        "--grid", metavar="KEY=VALUES", help="A parameter's values: name=v1,v2,... or name=low..high (integers)."
    ),
]
MetricOption = Annotated[
    str, typer.Option("--metric", metavar="STATISTIC", help="The statistic to maximise (drawdowns: minimise).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def parse_space(pairs: list[str]) -> dict[str, Any]:
    """Read ``name=v1,v2`` (choices) and ``name=low..high`` (every integer) into a parameter space."""
    space: dict[str, Any] = {}
    for pair in pairs:
        name, separator, values = pair.partition("=")
        name = name.strip()
        if not separator or not name or not values.strip():
            raise _Failure(f"--grid {pair!r} is not name=v1,v2 or name=low..high (e.g. --grid fast=5,10,20)")
        if name in space:
            raise _Failure(f"--grid {name!r} is given twice")
        if ".." in values:
            low, _, high = values.partition("..")
            try:
                space[name] = (int(low), int(high))
            except ValueError:
                raise _Failure(f"--grid {pair!r}: a range takes two integers, low..high") from None
        else:
            space[name] = [_value(value.strip()) for value in values.split(",") if value.strip()]
    if not space:
        raise _Failure("give at least one --grid name=values")
    return space


def check_strategy(strategy: str, space: dict[str, Any]) -> None:
    """Refuse an unknown strategy, or a grid over a parameter it does not take, before any file is read:
    a sweep would otherwise skip every combination for the same reason."""
    from neuraltrade.strategies.registry import require_strategy

    require_strategy(strategy, space)


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _progress_bar(label: str) -> Progress:
    return Progress(label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)


@app.command()
@_reporting_failures
def sweep(
    data: DataOption,
    grid_values: GridOption,
    strategy: StrategyOption = "sma_cross",
    random: Annotated[
        int | None, typer.Option("--random", metavar="COUNT", help="Sample this many combinations instead.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="SEED", help="Seed of the random sample.")] = 0,
    metric: MetricOption = "sharpe",
    commission: CommissionOption = DEFAULT_COMMISSION,
    workers: Annotated[
        int | None, typer.Option("--workers", metavar="COUNT", help="Processes (default: every core).")
    ] = None,
    top: Annotated[int, typer.Option("--top", metavar="ROWS", help="Rows to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Backtest every combination of parameters (or a random sample of them), in parallel, and rank them."""
    from neuraltrade.backtest import BacktestConfig
    from neuraltrade.research import sweep as research

    space = parse_space(grid_values)
    _run(lambda: check_strategy(strategy, space))

    def search() -> Any:
        combinations = research.random_sample(space, random, seed) if random else research.grid(space)
        market, _ = read_market(data)
        with _progress_bar("sweeping") as progress:
            task = progress.add_task("sweep", total=len(combinations))
            return research.sweep(
                market,
                strategy,
                combinations,
                BacktestConfig(commission=commission),
                workers=workers,
                metric=metric,
                progress=lambda done, total: progress.update(task, completed=done),
            )

    result = _run(search)
    if as_json:
        document = {"metric": metric, "commission": commission, "rows": result.records(), "skipped": _skipped(result)}
        print(json.dumps(document, default=str))
        return
    table = Table(
        title=f"{strategy}: {len(result.rows)} combinations by {metric} ({len(result.skipped)} skipped), "
        f"commission {format_fraction_as_percent(commission)}"
    )
    for column in ("parameters", metric, "return_pct", "max_drawdown_pct", "trades"):
        table.add_column(column, justify="left" if column == "parameters" else "right")
    for row in result.ranked()[:top]:
        figures = [
            format_statistic(key, row.statistics.get(key))
            for key in (metric, "return_pct", "max_drawdown_pct", "trades")
        ]
        table.add_row(format_setting(row.params), *figures)
    console.print(table)


def _skipped(result: Any) -> list[dict[str, Any]]:
    return [{"params": skipped.params, "reason": skipped.reason} for skipped in result.skipped]


@app.command("walk-forward")
@_reporting_failures
def walk_forward(
    data: DataOption,
    grid_values: GridOption,
    train_bars: Annotated[int, typer.Option("--train-bars", metavar="BARS", help="Bars each optimisation reads.")],
    test_bars: Annotated[int, typer.Option("--test-bars", metavar="BARS", help="Bars each out-of-sample test covers.")],
    strategy: StrategyOption = "sma_cross",
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="rolling or anchored train windows.")] = "rolling",
    metric: MetricOption = "sharpe",
    commission: CommissionOption = DEFAULT_COMMISSION,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record the out-of-sample returns in the database's trial registry (counted by the "
            "deflated Sharpe of `learning-report`).",
        ),
    ] = True,
    db: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Optimise on each train window, test the best parameters on the next bars; report out of sample only."""
    from neuraltrade.backtest import BacktestConfig
    from neuraltrade.research import walk_forward as walking

    space = parse_space(grid_values)
    _run(lambda: check_strategy(strategy, space))
    markets: list[Any] = []

    def walk() -> Any:
        market, _ = read_market(data)
        markets.append(market)
        with _progress_bar("walking forward") as progress:
            task = progress.add_task("folds", total=None)
            return walking.walk_forward(
                market,
                strategy,
                space,
                BacktestConfig(commission=commission),
                train_bars=train_bars,
                test_bars=test_bars,
                mode=mode,
                metric=metric,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )

    result = _run(walk)
    trial = None
    if record:
        trial = _run(
            lambda: _record_walk(
                db, result, markets[0], strategy, space, train_bars, test_bars, mode, metric, commission
            )
        )
    folds = [
        {
            "fold": fold.number,
            "test_start": fold.test_start_time.isoformat(),
            "test_end": fold.test_end_time.isoformat(),
            "params": fold.params,
            "statistics": fold.statistics,
        }
        for fold in result.folds
    ]
    if as_json:
        document = {
            "mode": mode,
            "metric": metric,
            "commission": commission,
            "out_of_sample": result.statistics,
            "folds": folds,
            "trial_id": trial,
        }
        print(json.dumps(document))
        return
    table = Table(
        title=f"{strategy} walk-forward ({mode}, {len(folds)} folds, commission "
        f"{format_fraction_as_percent(commission)}): out-of-sample figures only"
    )
    for column in ("fold", "test window", "parameters", "return_pct", metric, "trades"):
        right = column in ("fold", "return_pct", metric, "trades")
        table.add_column(column, justify="right" if right else "left", no_wrap=column == "test window")
    for fold in folds:
        statistics = fold["statistics"]
        table.add_row(
            str(fold["fold"]),
            f"{fold['test_start'][:10]} .. {fold['test_end'][:10]}",
            format_setting(fold["params"] or {}) or "(cash)",
            format_statistic("return_pct", statistics.get("return_pct")),
            format_statistic(metric, statistics.get(metric)),
            format_quantity(statistics.get("trades")),
        )
    console.print(table)
    stitched = result.statistics
    console.print(
        f"stitched out-of-sample: return {format_statistic('return_pct', stitched.get('return_pct'))} %, {metric} "
        f"{format_statistic(metric, stitched.get(metric))}, max drawdown "
        f"{format_statistic('max_drawdown_pct', stitched.get('max_drawdown_pct'))} %, "
        f"{format_quantity(stitched.get('trades'))} trades",
        highlight=False,
    )
    if trial is not None:
        console.print(f"recorded as trial {trial} in the trial registry", highlight=False)


def _record_walk(
    database_url: str | None,
    result: Any,
    market: Any,
    strategy: str,
    space: dict[str, Any],
    train_bars: int,
    test_bars: int,
    mode: str,
    metric: str,
    commission: float,
) -> str | None:
    """Record a walk-forward's out-of-sample returns as a trial; its id, or None without a database."""
    from neuraltrade.research.trials import walk_forward_trial
    from tasks.trials import record_trials

    first = result.first_bar
    trial = walk_forward_trial(
        strategy=strategy,
        symbols=market.symbols,
        timestamps=market.timestamps[first : first + len(result.equity)],
        equity=result.equity,
        starting_equity=result.folds[0].starting_equity if result.folds else float("nan"),
        parameters={
            "grid": space,
            "train_bars": train_bars,
            "test_bars": test_bars,
            "mode": mode,
            "metric": metric,
            "commission": commission,
        },
    )
    return None if record_trials(database_url, [trial]) is None else str(trial.id)
