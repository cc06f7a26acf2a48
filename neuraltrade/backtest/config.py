"""How a backtest trades: cash, costs, fill timing, sizing and exit rules, frozen and hashed with each run."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError

#: backtesting.py's "all in" order size: one less than a whole equity, so that it reads as a fraction.
ALL_IN = 1.0 - 2.220446049250313e-16
#: The relative commission the applications charge unless told otherwise: `neuraltrade backtest`, `sweep`,
#: `walk-forward` and the nightly flow `run_backtests` all use it, so that a run by hand and the night's run
#: of the same strategy show the same figures. 0.1% of the notional per fill is a retail broker's order of
#: magnitude; a frictionless default flatters every strategy that trades often. `BacktestConfig` itself
#: keeps backtesting.py's default of 0, so that the engine compares one for one with it.
DEFAULT_COMMISSION = 0.001


class SameBarExit(enum.Enum):
    """Which exit wins when one bar reaches both a trade's stop-loss and its take-profit.

    Bars carry no intra-bar path, so the order is an assumption. ``STOP_LOSS_FIRST`` is the pessimistic
    rule and backtesting.py's; ``TAKE_PROFIT_FIRST`` the optimistic one; ``NEAREST_TO_OPEN`` assumes the
    price reached the level closer to the bar's open first.
    """

    STOP_LOSS_FIRST = "stop_loss_first"
    TAKE_PROFIT_FIRST = "take_profit_first"
    NEAREST_TO_OPEN = "nearest_to_open"


@dataclass(frozen=True, kw_only=True)
class BacktestConfig:
    """Parameters of one backtest; the defaults match backtesting.py 0.6 so results compare one for one.

    Parameters
    ----------
    cash
        Starting cash, shared by every symbol.
    commission
        Relative commission charged on the notional at entry and again at exit (0.002 = 0.2%); 0 as
        backtesting.py, while the applications default to `DEFAULT_COMMISSION`.
    fixed_commission
        Cash commission per fill, added to the relative one.
    spread
        Relative spread: an entry fills this fraction above (long) or below (short) the quoted price.
    margin
        Fraction of a position's value that must be covered by equity; ``1 / margin`` is the leverage.
    trade_on_close
        Fill market orders at the close of the bar they were decided on instead of the next open.
    exclusive_orders
        A new decision for a symbol first cancels its working orders and closes its open trades.
    close_at_end
        Close trades still open after the last bar (as backtesting.py's ``finalize_trades``: at the last
        bar's open, or the previous close with ``trade_on_close``), so they count among closed trades.
    order_size
        Size of an order from a signal: a fraction of available margin if below 1 (default: all in),
        else whole units.
    fractional
        Allow fractional units when sizing by a fraction of margin.
    max_participation
        Cap each fill at this fraction of the bar's volume; the rest of the order stays working.
    same_bar_exit
        The rule for a bar that reaches both stop-loss and take-profit.
    verify_causality
        Recompute each strategy's signals on prefixes of the history and refuse one that looks ahead.
    """

    cash: float = 10_000.0
    commission: float = 0.0
    fixed_commission: float = 0.0
    spread: float = 0.0
    margin: float = 1.0
    trade_on_close: bool = False
    exclusive_orders: bool = True
    close_at_end: bool = False
    order_size: float = ALL_IN
    fractional: bool = False
    max_participation: float | None = None
    same_bar_exit: SameBarExit = SameBarExit.STOP_LOSS_FIRST
    verify_causality: bool = True

    def __post_init__(self) -> None:
        _require(self.cash, "cash", lambda value: value > 0, "must be positive")
        _require(self.commission, "commission", lambda value: -0.1 <= value < 0.1, "must lie in [-0.1, 0.1)")
        _require(self.fixed_commission, "fixed_commission", lambda value: value >= 0, "must be >= 0")
        _require(self.spread, "spread", lambda value: 0 <= value < 0.1, "must lie in [0, 0.1)")
        _require(self.margin, "margin", lambda value: 0 < value <= 1, "must lie in (0, 1]")
        _require(self.order_size, "order_size", lambda value: value > 0, "must be positive")
        if self.order_size >= 1 and not float(self.order_size).is_integer():
            raise ConfigError(f"order_size {self.order_size!r} >= 1 means whole units and must be an integer")
        if self.max_participation is not None:
            _require(self.max_participation, "max_participation", lambda value: 0 < value <= 1, "must lie in (0, 1]")
        if not isinstance(self.same_bar_exit, SameBarExit):
            try:
                object.__setattr__(self, "same_bar_exit", SameBarExit(self.same_bar_exit))
            except ValueError as error:
                choices = ", ".join(rule.value for rule in SameBarExit)
                raise ConfigError(f"same_bar_exit {self.same_bar_exit!r} is not one of {choices}") from error
        # One configuration, one value: cash=10000 and cash=10000.0 compare equal field by field.
        for name in ("cash", "commission", "fixed_commission", "spread", "margin", "order_size", "max_participation"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    @property
    def leverage(self) -> float:
        """How many times equity the positions may be worth."""
        return 1.0 / self.margin

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


def _require(value: object, name: str, test: object, requirement: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"backtest {name} must be a finite number, was {value!r}")
    assert callable(test)
    if not test(value):
        raise ConfigError(f"backtest {name} {requirement}, was {value!r}")
