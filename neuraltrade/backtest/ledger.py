"""Equity per bar from the account's states: cash, units and cost basis per symbol after each change."""

from __future__ import annotations

import numpy as np

from neuraltrade.backtest.market import MarketData

#: One state of the account from a bar on: (bar, cash, units per symbol, cost basis per symbol).
Mark = tuple[int, float, tuple[float, ...], tuple[float, ...]]


def record(marks: list[Mark], mark: Mark) -> None:
    """Append `mark`, or replace the last mark if it is of the same bar (the account's state at its end)."""
    if marks and marks[-1][0] == mark[0]:
        marks[-1] = mark
    else:
        marks.append(mark)


def equity_curve(market: MarketData, marks: list[Mark], cash: float, broke_at: int | None = None) -> np.ndarray:
    """Return equity at every bar: each state holds until the next, positions valued at the last close.

    Equity is ``cash + sum(units * close - basis)``: trades are on margin, as in backtesting.py, so
    buying moves nothing out of cash and a position adds its profit or loss.
    """
    count = len(market)
    rows = len(market.symbols)
    if not marks:
        equity = np.full(count, cash)
    else:
        at = np.fromiter((mark[0] for mark in marks), dtype=np.int64, count=len(marks))
        cash_at = np.fromiter((mark[1] for mark in marks), dtype=np.float64, count=len(marks))
        units = np.array([mark[2] for mark in marks], dtype=np.float64).reshape(-1, rows)
        basis = np.array([mark[3] for mark in marks], dtype=np.float64).reshape(-1, rows)
        which = np.repeat(np.arange(len(marks)), np.diff(np.append(at, count)))
        equity = np.empty(count)
        first = int(at[0])
        equity[:first] = cash
        equity[first:] = cash_at[which] - basis[which].sum(axis=1)
        for row in range(rows):
            held = units[which, row]
            if held.any():
                equity[first:] += np.where(held != 0, held * np.nan_to_num(market.valuation[row, first:]), 0.0)
    if broke_at is not None:
        equity[broke_at:] = 0.0
    return equity
