"""Pre-trade risk checks: every order is measured against the book's limits before it is sent.

`RiskManager.check` runs every rule of `RiskLimits` against one `OrderRequest` and the `PortfolioState`
it would change, and returns a `RiskDecision` holding one `RiskRejection` per breached rule (all of them,
not the first), each with the rule's name, a sentence naming the values, and the figures as numbers.

What "after the order" means: the order fills in full at `OrderRequest.price`, and its symbol is valued at
that price before and after (so "before" and "after" differ only by units); every other symbol is valued
at `PortfolioState.prices`.

Orders that reduce risk are never trapped by the limits that exist to contain risk:

- the exposure limits (per-symbol position, gross, net, leverage) reject an order only if the measured
  quantity is above its limit after the order *and* the order makes it larger;
- the halts (daily loss, drawdown) reject only orders that add risk: an order passes a halted book when it
  shrinks its symbol's position towards zero without crossing it (a close, or a partial close).

`max_order_notional` is a fat-finger limit and applies to every order, closing ones too; a large book is
closed in several orders. A value exactly at its limit passes; a relative tolerance of 1e-9 absorbs the
rounding of sums of floating-point notionals.
"""

from __future__ import annotations

import math
import numbers
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from neuraltrade.canonical import digest, parse_timestamp
from neuraltrade.errors import ConfigError, SerializationError, ValidationError
from neuraltrade.records import Record
from neuraltrade.timestamps import require_aware

#: Relative slack under which a measured value still counts as at (not above) its limit.
TOLERANCE = 1e-9

_FRACTION_OF_ONE = ("daily_loss_limit_pct", "max_drawdown_halt_pct")


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """The book's limits; every one is optional (None: no limit) and its name is the rule's name.

    Attributes
    ----------
    max_position_notional
        Largest ``|position| * price`` of one symbol after an order, in cash.
    max_position_pct
        The same as a fraction of equity (0.2 = 20 %).
    max_gross_exposure
        Largest ``sum(|position| * price) / equity`` after an order (1.0 = fully invested, no leverage).
    max_net_exposure
        Largest ``|sum(position * price)| / equity`` after an order (longs and shorts offset).
    max_leverage
        Largest gross notional over equity after an order. Under this definition it measures the same ratio
        as `max_gross_exposure`; both are kept because the issue names both, and each rejects under its own
        name. Set one.
    max_order_notional
        Largest ``|quantity| * price`` of one order, in cash; applies to closing orders too.
    daily_loss_limit_pct
        Once equity is more than this fraction below the day's starting equity, orders that add risk are
        rejected until the day ends (0.05 = 5 %).
    max_drawdown_halt_pct
        Once equity is more than this fraction below its peak, orders that add risk are rejected.
    """

    max_position_notional: float | None = None
    max_position_pct: float | None = None
    max_gross_exposure: float | None = None
    max_net_exposure: float | None = None
    max_leverage: float | None = None
    max_order_notional: float | None = None
    daily_loss_limit_pct: float | None = None
    max_drawdown_halt_pct: float | None = None

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            if value is None:
                continue
            if not _is_number(value):
                raise ConfigError(f"risk limit {limit.name} must be a finite number or None, was {value!r}")
            if value <= 0:
                raise ConfigError(f"risk limit {limit.name} must be positive, was {value!r}")
            if limit.name in _FRACTION_OF_ONE and value >= 1:
                raise ConfigError(f"risk limit {limit.name} is a fraction of equity below 1, was {value!r}")
            object.__setattr__(self, limit.name, float(value))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the limits."""
        return digest(self)


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """An order as the risk manager sees it: signed units (+ buy, - sell) at an expected fill price, and
    the signal that asked for it (None for an order placed directly)."""

    client_order_id: str
    symbol: str
    quantity: float
    price: float
    timestamp: datetime
    signal_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise ValidationError(
                f"order request client_order_id must be a non-empty string, was {self.client_order_id!r}"
            )
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValidationError(
                f"order {self.client_order_id} symbol must be a non-empty string, was {self.symbol!r}"
            )
        quantity = _require_number(f"order {self.client_order_id} quantity", self.quantity)
        if quantity == 0:
            raise ValidationError(f"order {self.client_order_id} quantity must not be zero")
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(
            self, "price", _require_number(f"order {self.client_order_id} price", self.price, positive=True)
        )
        object.__setattr__(self, "timestamp", require_aware(f"order {self.client_order_id} timestamp", self.timestamp))

    @property
    def notional(self) -> float:
        """``|quantity| * price``, in cash."""
        return abs(self.quantity) * self.price


@dataclass(frozen=True, kw_only=True)
class PortfolioState:
    """The book an order is checked against: equity, signed positions in units, and prices to value them.

    Every symbol with a non-zero position needs a price (the order's own symbol is valued at the order's
    price instead). Drawdown is measured against ``max(peak_equity, equity)``, so a peak that lags a new
    high reads as no drawdown, never as a negative one.
    """

    timestamp: datetime
    equity: float
    positions: Mapping[str, float]
    prices: Mapping[str, float]
    day_start_equity: float
    peak_equity: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", require_aware("portfolio state timestamp", self.timestamp))
        for name in ("equity", "day_start_equity", "peak_equity"):
            object.__setattr__(self, name, _require_number(f"portfolio {name}", getattr(self, name), positive=True))
        positions = {
            symbol: _require_number(f"portfolio position in {symbol}", units)
            for symbol, units in self.positions.items()
        }
        prices = {
            symbol: _require_number(f"portfolio price of {symbol}", price, positive=True)
            for symbol, price in self.prices.items()
        }
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "prices", prices)

    @property
    def daily_loss_pct(self) -> float:
        """How far equity is below the day's starting equity, as a fraction of it (0 when above)."""
        return max(0.0, 1.0 - self.equity / self.day_start_equity)

    @property
    def drawdown_pct(self) -> float:
        """How far equity is below its peak, as a fraction of the peak."""
        return max(0.0, 1.0 - self.equity / max(self.peak_equity, self.equity))

    def notionals(self, *, symbol: str | None = None, price: float | None = None) -> dict[str, float]:
        """Return the signed notional (units * price) of every open position.

        If `symbol` and `price` are given, that symbol is valued at `price` instead of its stored price.
        """
        values = {}
        for held, units in self.positions.items():
            if units == 0 and held != symbol:
                continue
            if held == symbol and price is not None:
                values[held] = units * price
                continue
            if held not in self.prices:
                raise ValidationError(f"portfolio holds {units:,.6g} units of {held} but has no price for it")
            values[held] = units * self.prices[held]
        return values


@dataclass(frozen=True, kw_only=True)
class RiskRejection(Record):
    """Why one rule refused one order: a storable record (kind "risk_rejection").

    `rule` is the `RiskLimits` field that was breached; `reason` a sentence naming the values; `details`
    the same figures as numbers (always ``limit`` and ``value``; ``before`` where the rule compares the
    book before and after the order). `client_order_id` is the entry the rule refused, `signal_id` the
    decision that asked for it (None for an order placed directly).
    """

    KIND = "risk_rejection"
    SCHEMA_VERSION = 1

    rule: str
    reason: str
    client_order_id: str
    symbol: str
    timestamp: datetime
    details: dict[str, float] = field(default_factory=dict)
    signal_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ValidationError(f"risk rejection rule must be one of {', '.join(_RULES)}, was {self.rule!r}")
        if self.signal_id is not None and not isinstance(self.signal_id, uuid.UUID):
            raise ValidationError(f"risk rejection signal_id must be a UUID or None, was {self.signal_id!r}")
        object.__setattr__(self, "timestamp", require_aware("risk rejection timestamp", self.timestamp))
        object.__setattr__(self, "details", {str(key): float(value) for key, value in self.details.items()})

    def to_plain(self) -> dict[str, Any]:
        """Return the canonical plain form (what `canonical_json` writes: kind, schema version, fields)."""
        return self.canonical_plain()

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> RiskRejection:
        return cls.from_plain(plain)

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> RiskRejection:
        """Read a rejection from its plain form, with or without kind and schema version (as stored before
        rejections were records); ``from_plain(r.to_plain()) == r``."""
        try:
            return cls(
                rule=plain["rule"],
                reason=plain["reason"],
                client_order_id=plain["client_order_id"],
                symbol=plain["symbol"],
                timestamp=parse_timestamp(plain["timestamp"]),
                details=dict(plain.get("details", {})),
                signal_id=None if plain.get("signal_id") is None else uuid.UUID(plain["signal_id"]),
            )
        except KeyError as error:
            raise SerializationError(f"risk rejection is missing field {error.args[0]!r}") from error


@dataclass(frozen=True)
class RiskDecision:
    """The outcome of one check: approved exactly when no rule rejected the order."""

    rejections: tuple[RiskRejection, ...] = ()

    @property
    def approved(self) -> bool:
        """True when no rule rejected the order."""
        return not self.rejections

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the rules that rejected the order, in check order."""
        return tuple(rejection.rule for rejection in self.rejections)


class RiskManager:
    """Checks orders against `limits`; it holds no state of its own, so a check is a pure function."""

    def __init__(self, limits: RiskLimits) -> None:
        if not isinstance(limits, RiskLimits):
            raise ConfigError(f"a risk manager needs RiskLimits, was given {type(limits).__name__}")
        self.limits = limits

    def check(self, request: OrderRequest, state: PortfolioState) -> RiskDecision:
        """Run every configured rule on `request` against `state`; collect every rejection.

        Raises
        ------
        ValidationError
            If the book holds a position in a symbol it has no price for.
        """
        book = _Book.measure(request, state)
        rejections: list[RiskRejection] = []
        for rule in _RULES:
            limit = getattr(self.limits, rule)
            if limit is None:
                continue
            breach = _CHECKS[rule](book, limit)
            if breach is not None:
                reason, details = breach
                rejections.append(
                    RiskRejection(
                        rule=rule,
                        reason=reason,
                        client_order_id=request.client_order_id,
                        symbol=request.symbol,
                        timestamp=request.timestamp,
                        details=details,
                        signal_id=request.signal_id,
                    )
                )
        return RiskDecision(tuple(rejections))


# --- measurement --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Book:
    """The figures every rule needs, measured once per check."""

    request: OrderRequest
    state: PortfolioState
    position_before: float
    position_after: float
    gross_before: float
    gross_after: float
    net_before: float
    net_after: float

    @classmethod
    def measure(cls, request: OrderRequest, state: PortfolioState) -> _Book:
        before = state.notionals(symbol=request.symbol, price=request.price)
        units_before = state.positions.get(request.symbol, 0.0)
        units_after = units_before + request.quantity
        after = dict(before)
        after[request.symbol] = units_after * request.price
        return cls(
            request=request,
            state=state,
            position_before=units_before,
            position_after=units_after,
            gross_before=sum(abs(value) for value in before.values()),
            gross_after=sum(abs(value) for value in after.values()),
            net_before=sum(before.values()),
            net_after=sum(after.values()),
        )

    @property
    def reduces_position(self) -> bool:
        """The order shrinks its symbol's position towards zero without crossing it."""
        before, after = self.position_before, self.position_after
        return before != 0 and abs(after) < abs(before) and after * before >= 0

    @property
    def label(self) -> str:
        return f"order {self.request.client_order_id}"


def _above(value: float, limit: float) -> bool:
    return value > limit * (1.0 + TOLERANCE)


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _percent(value: float) -> str:
    return f"{100.0 * value:.2f}%"


def _ratio(value: float) -> str:
    return f"{value:.4g}"


def _exposure_breach(
    value_before: float, value_after: float, limit: float, sentence: str
) -> tuple[str, dict[str, float]] | None:
    # A book already beyond a limit (prices moved, equity fell) must be free to come back inside it.
    if _above(value_after, limit) and value_after > value_before:
        return sentence, {"limit": limit, "value": value_after, "before": value_before}
    return None


def _check_position_notional(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    price = book.request.price
    before, after = abs(book.position_before) * price, abs(book.position_after) * price
    sentence = (
        f"{book.label} would make {book.request.symbol} position {_money(after)} notional, "
        f"above max_position_notional {_money(limit)} (was {_money(before)})"
    )
    return _exposure_breach(before, after, limit, sentence)


def _check_position_pct(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    price, equity = book.request.price, book.state.equity
    before, after = abs(book.position_before) * price / equity, abs(book.position_after) * price / equity
    sentence = (
        f"{book.label} would make {book.request.symbol} position {_money(after * equity)} notional, "
        f"{_percent(after)} of equity {_money(equity)}, above max_position_pct {_percent(limit)} "
        f"(was {_percent(before)})"
    )
    return _exposure_breach(before, after, limit, sentence)


def _check_gross_exposure(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    equity = book.state.equity
    before, after = book.gross_before / equity, book.gross_after / equity
    sentence = (
        f"{book.label} would make gross exposure {_money(book.gross_after)}, {_ratio(after)} x equity "
        f"{_money(equity)}, above max_gross_exposure {_ratio(limit)} (was {_ratio(before)})"
    )
    return _exposure_breach(before, after, limit, sentence)


def _check_net_exposure(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    equity = book.state.equity
    before, after = abs(book.net_before) / equity, abs(book.net_after) / equity
    sentence = (
        f"{book.label} would make net exposure {_money(book.net_after)}, {_ratio(after)} x equity "
        f"{_money(equity)} in size, above max_net_exposure {_ratio(limit)} (was {_ratio(before)})"
    )
    return _exposure_breach(before, after, limit, sentence)


def _check_leverage(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    equity = book.state.equity
    before, after = book.gross_before / equity, book.gross_after / equity
    sentence = (
        f"{book.label} would make leverage {_ratio(after)} (gross notional {_money(book.gross_after)} over "
        f"equity {_money(equity)}), above max_leverage {_ratio(limit)} (was {_ratio(before)})"
    )
    return _exposure_breach(before, after, limit, sentence)


def _check_order_notional(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    request = book.request
    if not _above(request.notional, limit):
        return None
    sentence = (
        f"{book.label} to trade {request.quantity:,.6g} {request.symbol} at {_money(request.price)} is "
        f"{_money(request.notional)} notional, above max_order_notional {_money(limit)}"
    )
    return sentence, {"limit": limit, "value": request.notional}


def _check_daily_loss(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    state = book.state
    loss = state.daily_loss_pct
    if book.reduces_position or not _above(loss, limit):
        return None
    sentence = (
        f"{book.label} adds risk in {book.request.symbol} while equity {_money(state.equity)} is "
        f"{_percent(loss)} below day-start equity {_money(state.day_start_equity)}, beyond daily_loss_limit_pct "
        f"{_percent(limit)}; only orders that reduce a position pass until the day ends"
    )
    return sentence, {"limit": limit, "value": loss, "equity": state.equity, "day_start_equity": state.day_start_equity}


def _check_drawdown(book: _Book, limit: float) -> tuple[str, dict[str, float]] | None:
    state = book.state
    drawdown = state.drawdown_pct
    if book.reduces_position or not _above(drawdown, limit):
        return None
    peak = max(state.peak_equity, state.equity)
    sentence = (
        f"{book.label} adds risk in {book.request.symbol} while equity {_money(state.equity)} is "
        f"{_percent(drawdown)} below its peak {_money(peak)}, beyond max_drawdown_halt_pct {_percent(limit)}; "
        "trading is halted to orders that reduce a position"
    )
    return sentence, {"limit": limit, "value": drawdown, "equity": state.equity, "peak_equity": peak}


_CHECKS = {
    "max_position_notional": _check_position_notional,
    "max_position_pct": _check_position_pct,
    "max_gross_exposure": _check_gross_exposure,
    "max_net_exposure": _check_net_exposure,
    "max_leverage": _check_leverage,
    "max_order_notional": _check_order_notional,
    "daily_loss_limit_pct": _check_daily_loss,
    "max_drawdown_halt_pct": _check_drawdown,
}
#: Every rule, in the order checks run and rejections are listed (the order of `RiskLimits`' fields).
_RULES: tuple[str, ...] = tuple(limit.name for limit in fields(RiskLimits))


# --- validation ---------------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _require_number(name: str, value: object, *, positive: bool = False) -> float:
    if not _is_number(value):
        raise ValidationError(f"{name} must be a finite number, was {value!r}")
    number = float(value)  # type: ignore[arg-type]  # _is_number admitted only real numbers
    if positive and number <= 0:
        raise ValidationError(f"{name} must be positive, was {value!r}")
    return number
