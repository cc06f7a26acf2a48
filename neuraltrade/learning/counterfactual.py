"""Counterfactuals of closed trades, simulated: what each alternative action would have made on the same bars.

For every closed trade the alternatives are replayed by the backtest engine itself (`run_backtest`), as a
scripted single-trade backtest on the trade's symbol: one entry decision, one exit decision, exit levels
where the trade had them, and a sizer giving fixed units. Costs, spread, fill timing, participation caps
and stop handling are therefore the engine's own, and the replay of the action actually taken reproduces
the trade (`replay_trade`). The alternatives:

- ``no_trade``: stay flat (P&L 0, no simulation needed; its bars are the actual trade's window);
- ``opposite_side``: the same units on the other side, same entry, exit and exit-level distances;
- ``half_size`` / ``double_size``: the same trade with half / twice the units;
- ``exit_earlier`` / ``exit_later``: the exit moved `exit_offset_bars` bars (clipped to the bar after the
  entry and to the history's last fillable bar; the `detail` says when it was clipped). A trade the broker
  closed by a stop-loss, take-profit or trailing stop exits by a signal at the shifted bar, without the
  level that fired (kept, it would fire on the same bar again); a trade closed by a signal keeps its levels;
- ``without_stop`` (a trade with a stop-loss): the same trade with no stop-loss. A trade that was not
  stopped out exits where it did; one that was is held `exit_offset_bars` bars past the bar its stop
  fired on and leaves at that bar's fill price (the strategy's later exit is not known here);
- ``with_stop`` (a trade without a stop-loss): the same trade with a stop at ``stop_width · σ · √h`` from
  the fill price, σ the standard deviation (ddof 1) of the symbol's per-bar log returns over the
  `volatility_lookback` bars up to the decision bar (point in time), h the trade's holding bars (at
  least 1). With fewer than two returns or a flat price there is no width: the stop is left out, and the
  `detail` says so.

The regret of the action taken against an alternative is ``alternative_pnl − actual_pnl`` (cash, net of
costs): positive means the alternative would have done better. `actual_pnl` is the trade's own P&L.

What a replay cannot reproduce, and does instead: a trailing stop (its distance is not on the trade)
and a liquidation when the account ran out of money are replayed as a signal exit at the trade's exit bar
(its fill price, not the trailing level); a trade entered by a limit or stop order is replayed as a market
entry on its entry bar. For such trades the alternatives that keep the actual exit differ from the actual
trade by that approximation too; `replay_trade` shows by how much.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.engine import Account, OrderIntent, run_backtest
from neuraltrade.backtest.fills import ClosedPart
from neuraltrade.backtest.market import MarketData
from neuraltrade.backtest.trade import ClosedTrade, ExitReason
from neuraltrade.canonical import digest, stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.judge import daily_volatility
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import Record
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.timestamps import to_microseconds

_CONTINGENT = frozenset({ExitReason.STOP_LOSS, ExitReason.TAKE_PROFIT, ExitReason.TRAILING_STOP})
#: Bars of history kept before the entry decision in a replay (none is read; a margin for the fill rules).
_LEAD_BARS = 1
#: A replay's cash, as a multiple of the largest notional it can hold: sizing and margin never bind.
_CASH_MULTIPLE = 100.0
_REPLAY_RUN = uuid.UUID(int=0)


@dataclass(frozen=True, kw_only=True)
class CounterfactualConfig:
    """How the alternatives are built: the exit shift in bars, and the width of an added stop.

    Parameters
    ----------
    exit_offset_bars
        Bars by which ``exit_earlier`` and ``exit_later`` move the exit (and ``without_stop`` holds a
        stopped-out trade past its stop), at least 1.
    stop_width
        The stop ``with_stop`` adds, in units of σ·√h (σ per bar, h the trade's holding bars), > 0.
    volatility_lookback
        Bars of log returns σ is estimated from, up to the decision bar, at least 2.
    """

    exit_offset_bars: int = 3
    stop_width: float = 2.0
    volatility_lookback: int = 20

    def __post_init__(self) -> None:
        for name, least in (("exit_offset_bars", 1), ("volatility_lookback", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"counterfactual {name} must be an integer >= {least}, was {value!r}")
        width = self.stop_width
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise ConfigError(f"counterfactual stop_width must be a finite number > 0, was {width!r}")
        object.__setattr__(self, "stop_width", float(width))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


class Alternative(enum.Enum):
    """An action the trade could have been instead (a trade gets exactly one of the two stop alternatives)."""

    NO_TRADE = "no_trade"
    OPPOSITE_SIDE = "opposite_side"
    HALF_SIZE = "half_size"
    DOUBLE_SIZE = "double_size"
    EXIT_EARLIER = "exit_earlier"
    EXIT_LATER = "exit_later"
    WITHOUT_STOP = "without_stop"
    WITH_STOP = "with_stop"


_FLOATS = ("actual_pnl", "actual_return", "alternative_pnl", "alternative_return", "regret")


@dataclass(frozen=True, kw_only=True)
class Counterfactual(Record):
    """One alternative to one closed trade, simulated, and the regret of the action taken against it.

    Returns are fractions of the actual trade's entry notional (``|size| · entry_price``); `regret` is
    ``alternative_pnl − actual_pnl``. `entry_bar` and `exit_bar` are the alternative's, as indices of the
    symbol's bars (for ``no_trade``, the actual trade's window). `detail` says what was simulated in one phrase.
    """

    KIND: ClassVar[str] = "counterfactual"
    SCHEMA_VERSION: ClassVar[int] = 1

    id: uuid.UUID
    trade_id: uuid.UUID
    run_id: uuid.UUID | None
    symbol: str
    alternative: str
    config_digest: str
    actual_pnl: float
    actual_return: float
    alternative_pnl: float
    alternative_return: float
    regret: float
    entry_bar: int
    exit_bar: int
    detail: str

    def __post_init__(self) -> None:
        if isinstance(self.alternative, Alternative):
            object.__setattr__(self, "alternative", self.alternative.value)
        choices = {item.value for item in Alternative}
        if self.alternative not in choices:
            raise ValidationError(f"counterfactual alternative {self.alternative!r} is not one of {sorted(choices)}")
        for name in ("trade_id", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, uuid.UUID) and not (name == "run_id" and value is None):
                raise ValidationError(f"counterfactual {name} must be a UUID, was {value!r}")
        expected = self.id_for(self.trade_id, self.alternative, self.config_digest)
        if self.id != expected:
            raise ValidationError(f"counterfactual id {self.id!r} is not its stable id {expected}")
        if not self.symbol:
            raise ValidationError("counterfactual symbol must not be empty")
        for name in _FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValidationError(f"counterfactual {name} must be a finite number, was {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("entry_bar", "exit_bar"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"counterfactual {name} must be an integer >= 0, was {value!r}")
        if self.exit_bar < self.entry_bar:
            raise ValidationError(f"counterfactual exit_bar {self.exit_bar} is before its entry_bar {self.entry_bar}")

    @staticmethod
    def id_for(trade_id: uuid.UUID, alternative: Alternative | str, config_digest: str) -> uuid.UUID:
        """``stable_id("counterfactual", trade_id, alternative, config_digest)``."""
        value = alternative.value if isinstance(alternative, Alternative) else alternative
        return stable_id("counterfactual", trade_id, value, config_digest)

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Counterfactual:
        """Build a counterfactual from the plain values of its fields."""
        values = dict(plain)
        values["id"] = uuid.UUID(values["id"])
        values["trade_id"] = uuid.UUID(values["trade_id"])
        values["run_id"] = None if values["run_id"] is None else uuid.UUID(values["run_id"])
        for name in _FLOATS:
            values[name] = float(values[name])  # canonical JSON writes 2.0 as 2
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Replay:
    """What one scripted replay made: P&L summed over its closed parts, its bars (the symbol's), exit price
    and the reason of its last exit (None when nothing was opened)."""

    pnl: float
    entry_bar: int
    exit_bar: int
    exit_price: float
    exit_reason: ExitReason | None


# -- the scripted replay -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """One single-trade path in symbol bars: the entry and exit fill bars (exit None: no exit decision)."""

    side: int
    units: float
    entry_bar: int
    exit_bar: int | None
    stop_loss: float | None
    take_profit: float | None


@dataclass(frozen=True, kw_only=True)
class _ScriptConfig(StrategyConfig):
    side: int
    entry_decision: int
    exit_decision: int | None
    stop_loss: float | None
    take_profit: float | None


class _Script(Strategy):
    """One entry decision and at most one exit decision, with the entry's exit-level distances."""

    name: ClassVar[str] = "counterfactual_replay"
    config: _ScriptConfig

    def signals(self, history: PriceHistory) -> SignalFrame:
        config = self.config
        count = len(history)
        target = np.full(count, np.nan)
        target[config.entry_decision] = float(config.side)
        if config.exit_decision is not None:
            target[config.exit_decision] = 0.0
        confidence = np.where(np.isnan(target), np.nan, 1.0)
        return SignalFrame(
            target=target,
            confidence=confidence,
            stop_loss=self._level(config.stop_loss, count),
            take_profit=self._level(config.take_profit, count),
        )

    def _level(self, distance: float | None, count: int) -> np.ndarray | None:
        if distance is None:
            return None
        values = np.full(count, np.nan)
        values[self.config.entry_decision] = distance
        return values


@dataclass(frozen=True)
class _Bars:
    """A slice of the symbol's history, as a one-symbol market, for every replay of one trade."""

    start: int
    market: MarketData
    config: BacktestConfig
    lag: int

    def replay(self, plan: _Plan) -> Replay:
        entry_decision = plan.entry_bar - self.lag - self.start
        exit_decision = None if plan.exit_bar is None else plan.exit_bar - self.lag - self.start
        strategy = _Script(
            _ScriptConfig(
                side=plan.side,
                entry_decision=entry_decision,
                exit_decision=exit_decision,
                stop_loss=plan.stop_loss,
                take_profit=plan.take_profit,
            )
        )

        def fixed_units(intent: OrderIntent, history: PriceHistory, account: Account) -> float:
            del history, account
            return intent.direction * plan.units

        result = run_backtest(self.market, strategy, self.config, sizer=fixed_units, run_id=_REPLAY_RUN)
        parts = [part for part in result.trade_figures if isinstance(part, ClosedPart)]
        if not parts:
            exit_bar = plan.entry_bar if plan.exit_bar is None else plan.exit_bar
            return Replay(0.0, plan.entry_bar, exit_bar, math.nan, None)
        pnl = math.fsum(part.size * (part.exit_price - part.entry_price) - part.commission for part in parts)
        last = parts[-1]
        return Replay(
            pnl,
            self.start + min(part.entry_bar for part in parts),
            self.start + max(part.exit_bar for part in parts),
            float(last.exit_price),
            last.reason,
        )


@dataclass(frozen=True, slots=True)
class _Trade:
    """The trade mapped onto the symbol's bars: entry and exit fill bars, side, units, level distances."""

    entry_bar: int
    exit_bar: int
    side: int
    units: float
    stop_loss: float | None
    take_profit: float | None
    last_fill: int  # the last bar a fill of a replay can happen on
    lag: int  # bars between a decision and its fill: 1, or 0 with trade_on_close


def _symbol_bar(history: PriceHistory, trade: ClosedTrade, name: str) -> int:
    micros = to_microseconds(getattr(trade, name))
    bar = int(np.searchsorted(history.timestamps, micros))
    if bar >= len(history) or int(history.timestamps[bar]) != micros:
        raise ValidationError(f"trade {name} {getattr(trade, name).isoformat()} is not a bar of {history.symbol}")
    return bar


def _distance(level: float | None, entry: float) -> float | None:
    """A level as a distance from the entry price (the inverse of the broker's ``entry · (1 ± d)``)."""
    if level is None:
        return None
    distance = abs(1.0 - level / entry)
    return distance if distance > 0 else None


def _map_trade(trade: ClosedTrade, history: PriceHistory, backtest: BacktestConfig) -> _Trade:
    if trade.symbol != history.symbol:
        raise ValidationError(f"trade of {trade.symbol!r} cannot be replayed on the history of {history.symbol!r}")
    if trade.size == 0 or not math.isfinite(trade.size):
        raise ValidationError(f"trade of {trade.symbol!r} has size {trade.size!r}")
    lag = 0 if backtest.trade_on_close else 1
    entry, exit_ = _symbol_bar(history, trade, "entry_time"), _symbol_bar(history, trade, "exit_time")
    if entry - lag < 0:
        raise ValidationError(f"trade of {trade.symbol!r} entered on bar {entry}, with no bar to decide it on")
    side = 1 if trade.size > 0 else -1
    return _Trade(
        entry_bar=entry,
        exit_bar=exit_,
        side=side,
        units=abs(trade.size),
        stop_loss=_distance(trade.stop_loss, trade.entry_price),
        take_profit=_distance(trade.take_profit, trade.entry_price),
        last_fill=len(history) - 2 + lag,
        lag=lag,
    )


def _bars(history: PriceHistory, backtest: BacktestConfig, mapped: _Trade, plans: Sequence[_Plan]) -> _Bars:
    start = max(0, mapped.entry_bar - mapped.lag - _LEAD_BARS)
    latest = max(max(plan.exit_bar or 0, mapped.exit_bar) for plan in plans)
    stop = min(len(history), latest + 2)
    names = ("timestamps", "open", "high", "low", "close", "volume")
    window = PriceHistory(history.symbol, *(getattr(history, name)[start:stop] for name in names))
    largest = max(plan.units for plan in plans) * float(np.nanmax(window.high))
    cash = max(backtest.cash, _CASH_MULTIPLE * (largest + backtest.fixed_commission + 1.0))
    config = dataclasses.replace(backtest, cash=cash, fractional=True, verify_causality=False, close_at_end=True)
    return _Bars(start, MarketData.from_histories([window]), config, mapped.lag)


def _clip(mapped: _Trade, bar: int) -> int:
    return min(max(bar, mapped.entry_bar + 1), mapped.last_fill)


def _actual_plan(mapped: _Trade) -> _Plan:
    # The exit decision is a backstop for a level exit: on the bar a level fires it finds no trade left.
    exit_bar = _clip(mapped, mapped.exit_bar)
    return _Plan(
        mapped.side,
        mapped.units,
        mapped.entry_bar,
        exit_bar if exit_bar > mapped.entry_bar else None,
        mapped.stop_loss,
        mapped.take_profit,
    )


def replay_trade(trade: ClosedTrade, history: PriceHistory, backtest: BacktestConfig) -> Replay:
    """Replay the action taken (same side, units, entry, exit and exit levels) through the engine.

    For a trade entered at market and closed by a signal, a stop-loss, a take-profit or at the end, the
    replay's P&L is the trade's; it is what proves the alternatives are simulated by the same engine.
    """
    mapped = _map_trade(trade, history, backtest)
    plan = _actual_plan(mapped)
    return _bars(history, backtest, mapped, [plan]).replay(plan)


# -- the alternatives ----------------------------------------------------------------------------------


def _volatility(history: PriceHistory, decision_bar: int, lookback: int) -> float | None:
    """The judge's σ (`daily_volatility`), None where it cannot be estimated (under two returns, flat or bad prices)."""
    sigma = daily_volatility(history, decision_bar, lookback)
    return sigma if math.isfinite(sigma) and sigma > 0 else None


def _plans(
    trade: ClosedTrade, mapped: _Trade, history: PriceHistory, config: CounterfactualConfig
) -> dict[Alternative, tuple[_Plan, str]]:
    """Each simulated alternative's plan, and its detail phrase with ``{at}`` where the exit's price goes."""
    actual = _actual_plan(mapped)
    offset = config.exit_offset_bars
    contingent = trade.exit_reason in _CONTINGENT
    side_name = {1: "long", -1: "short"}
    plans: dict[Alternative, tuple[_Plan, str]] = {
        Alternative.OPPOSITE_SIDE: (
            dataclasses.replace(actual, side=-mapped.side),
            f"{side_name[-mapped.side]} instead of {side_name[mapped.side]}, exit {{at}}",
        ),
        Alternative.HALF_SIZE: (
            dataclasses.replace(actual, units=mapped.units / 2),
            f"half size ({mapped.units / 2:g} units), exit {{at}}",
        ),
        Alternative.DOUBLE_SIZE: (
            dataclasses.replace(actual, units=mapped.units * 2),
            f"double size ({mapped.units * 2:g} units), exit {{at}}",
        ),
    }
    levels = (None, None) if contingent else (mapped.stop_loss, mapped.take_profit)
    for alternative, shift, word in (
        (Alternative.EXIT_EARLIER, -offset, "earlier"),
        (Alternative.EXIT_LATER, offset, "later"),
    ):
        wanted = mapped.exit_bar + shift
        exit_bar = _clip(mapped, wanted)
        moved = abs(exit_bar - mapped.exit_bar)
        direction = word if (exit_bar - mapped.exit_bar) * shift > 0 else "earlier" if shift > 0 else "later"
        phrase = f"exit {moved} bar{'s' if moved != 1 else ''} {direction} {{at}}" if moved else "exit {at}"
        if contingent and not moved:
            phrase = "exit on the same bar by a signal {at}"
        if exit_bar != wanted:
            phrase += " (clipped at the entry)" if wanted < exit_bar else " (clipped at the history's end)"
        plans[alternative] = (_Plan(mapped.side, mapped.units, mapped.entry_bar, exit_bar, *levels), phrase)
    if mapped.stop_loss is not None:
        stopped = trade.exit_reason is ExitReason.STOP_LOSS
        held_to = _clip(mapped, mapped.exit_bar + offset) if stopped else actual.exit_bar
        phrase = f"without the {100 * mapped.stop_loss:.3g}% stop, exit {{at}}"
        if stopped:
            phrase = f"without the {100 * mapped.stop_loss:.3g}% stop, held {offset} bars past it, exit {{at}}"
            if held_to != mapped.exit_bar + offset:
                phrase += " (clipped at the history's end)"
        plans[Alternative.WITHOUT_STOP] = (
            dataclasses.replace(actual, exit_bar=held_to, stop_loss=None),
            phrase,
        )
    else:
        sigma = _volatility(history, mapped.entry_bar - mapped.lag, config.volatility_lookback)
        holding = max(1, mapped.exit_bar - mapped.entry_bar)
        if sigma is None:
            plans[Alternative.WITH_STOP] = (actual, "no stop added (no volatility estimate), exit {at}")
        else:
            distance = config.stop_width * sigma * math.sqrt(holding)
            phrase = f"with a {100 * distance:.3g}% stop ({config.stop_width:g} σ√h, h={holding}), exit {{at}}"
            plans[Alternative.WITH_STOP] = (dataclasses.replace(actual, stop_loss=distance), phrase)
    return plans


def simulate_counterfactuals(
    trade: ClosedTrade,
    history: PriceHistory,
    backtest: BacktestConfig,
    *,
    trade_id: uuid.UUID,
    run_id: uuid.UUID | None,
    config: CounterfactualConfig = CounterfactualConfig(),
) -> tuple[Counterfactual, ...]:
    """Simulate every alternative of `trade` on its symbol's `history` under `backtest`'s costs and rules.

    Returns one `Counterfactual` per alternative, in `Alternative` order (seven: ``without_stop`` for a
    trade with a stop-loss, ``with_stop`` for one without).
    """
    mapped = _map_trade(trade, history, backtest)
    plans = _plans(trade, mapped, history, config)
    bars = _bars(history, backtest, mapped, [plan for plan, _ in plans.values()])
    notional = mapped.units * trade.entry_price
    actual_pnl = trade.pnl
    config_digest = config.digest

    def record(alternative: Alternative, pnl: float, entry_bar: int, exit_bar: int, detail: str) -> Counterfactual:
        return Counterfactual(
            id=Counterfactual.id_for(trade_id, alternative, config_digest),
            trade_id=trade_id,
            run_id=run_id,
            symbol=trade.symbol,
            alternative=alternative.value,
            config_digest=config_digest,
            actual_pnl=actual_pnl,
            actual_return=actual_pnl / notional,
            alternative_pnl=pnl,
            alternative_return=pnl / notional,
            regret=pnl - actual_pnl,
            entry_bar=entry_bar,
            exit_bar=exit_bar,
            detail=detail,
        )

    items = [record(Alternative.NO_TRADE, 0.0, mapped.entry_bar, mapped.exit_bar, "no trade: flat over the window")]
    for alternative in Alternative:
        if alternative not in plans:
            continue
        plan, phrase = plans[alternative]
        outcome = bars.replay(plan)
        if outcome.exit_reason is None:
            at = "nowhere: nothing filled"
        else:
            reason = outcome.exit_reason
            how = "" if reason is ExitReason.SIGNAL else f" by {reason.value.replace('_', ' ')}"
            at = f"at {outcome.exit_price:.6g}{how}"
        detail = phrase.replace("{at}", at)
        items.append(record(alternative, outcome.pnl, outcome.entry_bar, outcome.exit_bar, detail))
    return tuple(items)


def summarise_counterfactuals(items: Sequence[Counterfactual]) -> list[dict[str, Any]]:
    """One row per alternative present, in `Alternative` order: trades, mean and total regret, and the share of
    trades on which the alternative would have done better (regret > 0)."""
    rows = []
    for alternative in Alternative:
        regrets = [item.regret for item in items if item.alternative == alternative.value]
        if not regrets:
            continue
        rows.append(
            {
                "alternative": alternative.value,
                "trades": len(regrets),
                "mean_regret": math.fsum(regrets) / len(regrets),
                "total_regret": math.fsum(regrets),
                "better_share": sum(1 for regret in regrets if regret > 0) / len(regrets),
            }
        )
    return rows
