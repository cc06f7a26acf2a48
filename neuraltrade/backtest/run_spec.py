"""A backtest run's one identity: everything that shapes its result, frozen, normalised and hashed.

`RunSpec` names the strategy and its parameters, the backtest configuration, the risk limits, the sizing,
the memory read (by digest), the bars read (by digest) and `ENGINE_VERSION`. Its canonical form follows
`neuraltrade.canonical` (RFC 8785 numbers, so ``10000`` and ``10000.0`` are one value); its `run_id` is
the only id a run has: the CLI's ``backtest --json``, the nightly task and the stored row all show it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from neuraltrade.backtest.config import BacktestConfig
from neuraltrade.backtest.market import MarketData
from neuraltrade.canonical import digest, stable_id, to_plain
from neuraltrade.errors import ValidationError
from neuraltrade.records import Record
from neuraltrade.strategies.base import Strategy
from neuraltrade.trading.risk import RiskLimits
from neuraltrade.trading.sizing import CappedKelly, FixedFraction, VolatilityTarget

#: The version of the engine's rules: fills, costs, sizing at the fill, exits and statistics. Any change to
#: one of them that can change a run's trades, equity or statistics must bump it, so that runs stored by
#: the older rules are computed again instead of being reused under the same id.
ENGINE_VERSION = "1"

SizingConfig = FixedFraction | VolatilityTarget | CappedKelly

#: How a run specification names its sizer.
SIZING_KINDS: Mapping[type, str] = {
    FixedFraction: "fixed_fraction",
    VolatilityTarget: "volatility_target",
    CappedKelly: "capped_kelly",
}


def market_digest(market: MarketData) -> str:
    """SHA-256 of the bars of `market` (symbols, timestamps and OHLCV)."""
    hasher = hashlib.sha256()
    for symbol in market.symbols:
        history = market.histories[symbol]
        hasher.update(symbol.encode() + b"\x1f")
        for values in (history.timestamps, history.open, history.high, history.low, history.close, history.volume):
            hasher.update(np.ascontiguousarray(values).tobytes())
    return hasher.hexdigest()


@dataclass(frozen=True, kw_only=True)
class RunSpec(Record):
    """Everything that shapes a backtest's result; its `run_id` is the run's one id."""

    KIND = "backtest_run"
    SCHEMA_VERSION = 1

    strategy: str
    strategy_id: str
    strategy_parameters: Mapping[str, Any]
    backtest: Mapping[str, Any]
    risk_limits: Mapping[str, Any] | None = None
    sizing: Mapping[str, Any] | None = None
    memory_digest: str | None = None
    symbols: tuple[str, ...]
    data_digest: str
    engine_version: str = ENGINE_VERSION

    def __post_init__(self) -> None:
        if not self.strategy or not self.strategy_id:
            raise ValidationError("a run specification needs a strategy and a strategy_id")
        if not self.symbols:
            raise ValidationError("a run specification needs at least one symbol")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        # Plain, normalised values: a config given as 10000 or 10000.0 is one specification.
        for name in ("strategy_parameters", "backtest", "risk_limits", "sizing"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_plain(dict(value)))

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> RunSpec:
        return cls(**{**plain, "symbols": tuple(plain["symbols"])})

    @cached_property
    def config_digest(self) -> str:
        """SHA-256 of what shapes the run besides its bars (the strategy, configurations, memory, engine)."""
        plain = self.canonical_plain()
        del plain["data_digest"], plain["symbols"]
        return digest(plain)

    @cached_property
    def run_id(self) -> uuid.UUID:
        """The run's one id: of its configuration digest, its symbols and its data digest.

        Every field of the specification enters it, and it costs one canonical encoding where a sweep also
        reads `config_digest` (the encoding is the expensive part: a sweep derives an id per combination).
        """
        return stable_id(self.KIND, self.config_digest, list(self.symbols), self.data_digest)


def run_spec(
    strategy: Strategy,
    config: BacktestConfig,
    market: MarketData,
    *,
    limits: RiskLimits | None = None,
    sizing: SizingConfig | None = None,
    memory_digest: str | None = None,
    data_digest: str | None = None,
) -> RunSpec:
    """The specification of `strategy` run on `market` under `config`, the risk `limits`, the `sizing` and
    the memory read (`memory_digest`, by default that of the memory the strategy was given,
    ``strategy.supplies``) by the engine of this `ENGINE_VERSION`. `data_digest` saves hashing the bars
    again when it is known."""
    return RunSpec(
        strategy=strategy.name,
        strategy_id=strategy.strategy_id,
        strategy_parameters=strategy.config.to_plain(),
        backtest=to_plain(config),
        risk_limits=None if limits is None else to_plain(limits),
        sizing=None if sizing is None else {"kind": SIZING_KINDS[type(sizing)], **to_plain(sizing)},
        memory_digest=strategy.supplies.memory_digest if memory_digest is None else memory_digest,
        symbols=tuple(market.symbols),
        data_digest=market_digest(market) if data_digest is None else data_digest,
        # Read when called, not when the class was defined: a stored run of another engine is another run.
        engine_version=ENGINE_VERSION,
    )
