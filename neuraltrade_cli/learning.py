"""`neuraltrade patterns`, `reflections`, `counterfactual` and `learning-report`: what the learning loop stored.

Thin commands over `tasks.learning_report`, reading the database only (never creating or changing it). With
``--json`` each prints one JSON object and nothing else on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from neuraltrade.formatting import format_money, format_percent, format_time
from neuraltrade_cli.app import DatabaseOption, _Failure, _reporting_failures, _run, app, console, safe
from neuraltrade_cli.trading import _wide

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
RunArgument = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="A stored backtest run id (see `neuraltrade runs`).")
]


def _url(database_url: str | None) -> str:
    from models.engine import read_only_url

    return read_only_url(database_url)


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(_plain(document), allow_nan=False))


def _plain(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _ratio(value: Any, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{float(value):.{digits}f}"


@app.command()
@_reporting_failures
def patterns(
    strategy: Annotated[
        str | None,
        typer.Option("--strategy", metavar="ID", help="Only this strategy id (e.g. sma_cross-3f2a9c1b0d4e)."),
    ] = None,
    as_json: JsonOption = False,
    db: DatabaseOption = None,
) -> None:
    """List the patterns of each strategy's latest distillation: counts, probability, interval, test against
    the base rate."""
    from tasks.learning_report import pattern_listing

    listing = _run(lambda: pattern_listing(_url(db), strategy))
    if strategy is not None and not listing:
        raise _Failure(f"no distillation of strategy {strategy!r} is stored (`neuraltrade patterns` lists them all)")
    if as_json:
        _print_json({"strategies": listing})
        return
    if not listing:
        console.print("no distillation stored yet; `neuraltrade nightly` distils what the backtests taught")
        return
    for entry in listing:
        console.print(_patterns_table(entry))


def _patterns_table(entry: dict[str, Any]) -> Table:
    title = (
        f"{safe(entry['strategy'])}: {len(entry['patterns'])} patterns as of {format_time(entry['as_of'])} from "
        f"{entry['episodes']:,} episodes, base rate {_ratio(entry['base_rate'])} "
        f"({entry['pruned']} pruned, {entry['merged']} merged, {entry['contradictions']} contradictions)"
    )
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1))
    for column in ("rank", "side", "wins/trials", "decayed", "p", "95% interval", "base", "q", "vs base", "contra"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("side", "vs base") else "right")
    for row in entry["patterns"]:
        verdict = "better" if row["better_than_base"] else "worse" if row["worse_than_base"] else ""
        table.add_row(
            str(row["rank"]),
            row["side"],
            f"{row['wins']}/{row['trials']}",
            f"{row['decayed_wins']:.1f}/{row['decayed_trials']:.1f}",
            _ratio(row["probability"]),
            f"[{_ratio(row['interval_low'])}, {_ratio(row['interval_high'])}]",
            _ratio(row["base_rate"]),
            _ratio(row["q_value"]),
            verdict,
            str(len(row["contradicts"])) if row["contradicts"] else "",
        )
    return table


@app.command()
@_reporting_failures
def reflections(run_id: RunArgument, as_json: JsonOption = False, db: DatabaseOption = None) -> None:
    """Show each episode of a run with the judge's verdict and the critique's lessons and text."""
    from tasks.learning_report import reflection_listing

    listing = _run(lambda: reflection_listing(_url(db), run_id))
    if as_json:
        _print_json(listing)
        return
    episodes = listing["episodes"]
    title = (
        f"{safe(listing['strategy'])} on {safe(', '.join(listing['symbols']))}: {len(episodes)} episodes of "
        f"{listing['trades']} closed trades"
    )
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1), show_lines=False)
    for column in ("decided", "side", "net %", "verdict", "score", "lessons", "critique"):
        table.add_column(
            column,
            no_wrap=column not in ("lessons", "critique"),
            justify="right" if column in ("net %", "score") else "left",
            overflow="fold",
        )
    for row in episodes:
        verdict = row["verdict"]
        table.add_row(
            format_time(row["decision_time"]),
            row["side"],
            format_percent(100.0 * row["net_return"]),
            "-" if verdict is None else f"{'success' if verdict['success'] else 'failure'} ({verdict['barrier']})",
            "-" if verdict is None else f"{verdict['score']:+.3f}",
            ", ".join(row["lessons"]),
            safe(row["text"] or ""),
        )
    _wide().print(table)
    if not episodes:
        console.print(
            "no episode yet: the run's trades become episodes when `neuraltrade nightly` reflects on them "
            "(a trade waits until its outcome window has closed)"
        )


@app.command()
@_reporting_failures
def counterfactual(run_id: RunArgument, as_json: JsonOption = False, db: DatabaseOption = None) -> None:
    """Summarise the simulated alternatives of a run's trades: regret of the action taken against each."""
    from tasks.learning_report import counterfactual_listing

    listing = _run(lambda: counterfactual_listing(_url(db), run_id))
    if as_json:
        _print_json(listing)
        return
    rows = listing["alternatives"]
    if not rows:
        console.print(
            f"no counterfactual of run {listing['run_id']} is stored yet; `neuraltrade nightly` simulates them"
        )
        return
    table = Table(
        title=f"counterfactuals of run {listing['run_id']} ({safe(listing['strategy'])}): regret = alternative - actual"
    )
    for column in ("alternative", "trades", "mean regret", "total regret", "alternative better %"):
        table.add_column(column, justify="left" if column == "alternative" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["alternative"],
            f"{row['trades']:,}",
            format_money(row["mean_regret"]),
            format_money(row["total_regret"]),
            format_percent(100.0 * row["better_share"]),
        )
    console.print(table)


@app.command("learning-report")
@_reporting_failures
def learning_report(
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="HTML file to write.")] = Path(
        "learning-report.html"
    ),
    reps: Annotated[
        int, typer.Option("--reps", min=100, max=1_000_000, metavar="COUNT", help="Bootstrap resamples.")
    ] = 2000,
    db: DatabaseOption = None,
) -> None:
    """Write the learning report as HTML: gated against ungated (Sharpe difference and its lower bound, SPA,
    Deflated Sharpe, confusion matrix, Brier score), equity, regret and pattern plots."""
    from neuraltrade.research.learning_report import render_learning_report
    from tasks.learning_report import learning_report_data

    def read() -> Any:
        from models.engine import display_url, resolve_database_url

        label = display_url(resolve_database_url(db))
        return learning_report_data(_url(db), reps=reps, spa_reps=max(100, reps // 2), database_label=label)

    data = _run(read)
    html = render_learning_report(data)
    _run(lambda: output.write_text(html, encoding="utf-8"))
    console.print(
        f"wrote {output} ({output.stat().st_size / 1024:,.0f} KiB): {len(data.comparisons)} comparisons, "
        f"{len(data.patterns)} strategies' patterns",
        highlight=False,
    )
