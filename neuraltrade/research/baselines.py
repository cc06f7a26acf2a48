"""Two cheap filters the memory gate must beat: an equity-curve filter and a plain kNN vote of market states.

Both wrap a base strategy as the gate does (`neuraltrade.strategies.gated`): the base decides, and each of
its entries (a long or a short from flat, or a flip) is kept or vetoed, a vetoed entry from flat becoming no
decision and a vetoed flip a flat target (the old position is still closed, as the base wanted). They are
strategies, so that they backtest, pass `verify_causality` and are tuned exactly as the gate is; each
records per bar whether it vetoed (feature ``filter_vetoed``).

- `EquityCurveFilter`: trade the base only while its own closed-trade equity curve is above its moving
  average of the last N trades, the curve built from the base's closed trades whose exit is strictly before
  the decision (a closed trade's result is known at its exit fill). Fewer than N such trades: no veto.
- `KnnVote`: `memory_vote`'s rule without a vector store: the k past market states (the same vectors as the
  gate's, `market_state_vectors`) of the same symbol nearest to the current one, among those whose forward
  return over h bars is known strictly before the decision (state bar j with ``j + h < i``), vote with the
  signs of those returns; an entry is vetoed when the majority is against its side (a tie keeps it).
  Fewer than k such states: no veto.

And one benchmark that knows nothing (protocol v2 of docs/learning.md): `RandomVeto` vetoes, in each fold, a
given share of the base's entries chosen at random (`random_vetoes`), so that a filter can be compared with
vetoing as often at random ("trading less" held fixed).

Each comes with a grid of as many combinations as the gate's (`GATE_GRID`), so that all three filters have
the same tuning budget in a walk-forward (docs/learning.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from neuraltrade.backtest.trade import ClosedTrade
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import market_state_vectors
from neuraltrade.strategies.parameters import require_integer
from neuraltrade.timestamps import to_microseconds

__all__ = [
    "EQUITY_FILTER_GRID",
    "GATE_GRID",
    "KNN_VOTE_GRID",
    "EquityCurveFilter",
    "EquityCurveFilterConfig",
    "KnnVote",
    "KnnVoteConfig",
    "RandomVeto",
    "RandomVetoConfig",
    "apply_vetoes",
    "entry_bars",
    "random_vetoes",
]

#: The gate's tuning grid in the walk-forward (`neuraltrade.strategies.gated.GatedConfig` fields).
GATE_GRID: tuple[Mapping[str, Any], ...] = tuple(
    {"veto_below": veto_below, "k": k} for veto_below in (0.45, 0.50) for k in (10, 20)
)
#: The equity-curve filter's grid: the moving average's length in trades.
EQUITY_FILTER_GRID: tuple[Mapping[str, Any], ...] = tuple({"trades": trades} for trades in (5, 10, 20, 40))
#: The kNN vote's grid: neighbours and the forward-return horizon in bars.
KNN_VOTE_GRID: tuple[Mapping[str, Any], ...] = tuple(
    {"k": k, "horizon": horizon} for k in (10, 25) for horizon in (5, 10)
)


def apply_vetoes(frame: SignalFrame, veto: Callable[[int, int], bool]) -> SignalFrame:
    """Return `frame` with the entries `veto(bar, side)` refuses removed, as the gate removes them.

    Walks the decisions in order, tracking the position the filtered strategy holds: a decision for the
    side already held is dropped (a vetoed entry's repeat), an exit is kept, an entry is asked about; a
    vetoed entry from flat becomes no decision, a vetoed flip a flat target. Feature ``filter_vetoed`` is 1
    on vetoed bars.
    """
    target = frame.target.copy()
    vetoed = np.zeros(len(target))
    position = 0.0
    for bar in (int(bar) for bar in frame.decisions()):
        wanted = float(target[bar])
        if wanted == position:
            target[bar] = np.nan
            continue
        if wanted == 0.0:
            position = 0.0
            continue
        if veto(bar, int(wanted)):
            vetoed[bar] = 1.0
            target[bar] = 0.0 if position != 0.0 else np.nan
            position = 0.0
            continue
        position = wanted
    decided = ~np.isnan(target)
    return SignalFrame(
        target=target,
        confidence=np.where(decided, frame.confidence, 0.0),
        stop_loss=frame.stop_loss,
        take_profit=frame.take_profit,
        trailing_stop=frame.trailing_stop,
        entry_limit=frame.entry_limit,
        entry_stop=frame.entry_stop,
        valid_bars=frame.valid_bars,
        links={bar: edges for bar, edges in frame.links.items() if decided[bar]},
        features={**frame.features, "filter_vetoed": vetoed},
        warmup=frame.warmup,
        details={**frame.details, "filter": {"vetoes": int(vetoed.sum())}},
    )


def _check_base(kind: str, base: str, strategy: Strategy) -> None:
    if strategy.name != base:
        raise ConfigError(f"{kind} configured for base strategy {base!r} was given {strategy.name!r}")


@dataclass(frozen=True, kw_only=True)
class EquityCurveFilterConfig(StrategyConfig):
    """Parameters of `EquityCurveFilter`: the base strategy (name and parameters) and the moving average's
    length in closed trades."""

    base: str
    base_parameters: Mapping[str, Any] = field(default_factory=dict)
    trades: int = 10

    def __post_init__(self) -> None:
        require_integer("equity_filter", "trades", self.trades, 1)


class EquityCurveFilter(Strategy):
    """The base strategy, traded only while its closed-trade equity curve is above its N-trade average.

    Parameters
    ----------
    config
        The filter's parameters.
    base
        The base strategy (its name must be ``config.base``).
    closed_trades
        The base strategy's closed trades (any symbols: each history reads its own); only those whose exit
        time is strictly before a decision count for it.
    """

    name: ClassVar[str] = "equity_filter"
    config: EquityCurveFilterConfig

    def __init__(self, config: EquityCurveFilterConfig, base: Strategy, closed_trades: Sequence[ClosedTrade]) -> None:
        super().__init__(config)
        _check_base("equity_filter", config.base, base)
        self.base = base
        self._trades = tuple(closed_trades)

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the base's decisions with the entries taken below the equity curve's average vetoed."""
        mine = sorted((trade for trade in self._trades if trade.symbol == history.symbol), key=_exit_key)
        exits = np.array([to_microseconds(trade.exit_time) for trade in mine], dtype=np.int64)
        curve = np.cumsum(np.log1p([trade.return_pct / 100.0 for trade in mine]))
        length = self.config.trades

        def veto(bar: int, side: int) -> bool:
            del side
            known = int(np.searchsorted(exits, history.timestamps[bar], side="left"))
            if known < length:
                return False
            return bool(curve[known - 1] <= curve[known - length : known].mean())

        return apply_vetoes(self.base.signals(history), veto)


def _exit_key(trade: ClosedTrade) -> tuple[int, int]:
    return (to_microseconds(trade.exit_time), to_microseconds(trade.entry_time))


@dataclass(frozen=True, kw_only=True)
class KnnVoteConfig(StrategyConfig):
    """Parameters of `KnnVote`: the base strategy, neighbours, the forward-return horizon in bars, and the
    market-state embedder (the nightly one, as the gate's)."""

    base: str
    base_parameters: Mapping[str, Any] = field(default_factory=dict)
    k: int = 10
    horizon: int = 5
    window: int = 32
    dimension: int = 512
    embedder_seed: int = 20_240_601

    def __post_init__(self) -> None:
        require_integer("knn_vote", "k", self.k, 1)
        require_integer("knn_vote", "horizon", self.horizon, 1)
        _ = self.embedder_config  # validates the embedder fields

    @property
    def embedder_config(self) -> WindowEmbedderConfig:
        """The embedder of the market states compared."""
        return WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)


class KnnVote(Strategy):
    """The base strategy, its entries kept only where the nearest past market states' outcomes agree."""

    name: ClassVar[str] = "knn_vote"
    config: KnnVoteConfig

    def __init__(self, config: KnnVoteConfig, base: Strategy) -> None:
        super().__init__(config)
        _check_base("knn_vote", config.base, base)
        self.base = base

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the base's decisions with the entries the neighbours' majority is against vetoed."""
        config = self.config
        frame = self.base.signals(history)
        count = len(history)
        entries = [int(bar) for bar in frame.decisions() if frame.target[bar] != 0.0]
        if not entries:
            return apply_vetoes(frame, lambda bar, side: False)
        vectors = market_state_vectors(history, config.embedder_config)
        first_state = config.window - 1
        horizon = config.horizon
        forward = np.full(count, np.nan)
        forward[: count - horizon] = history.close[horizon:] / history.close[: count - horizon] - 1.0
        signs = np.sign(forward)

        def veto(bar: int, side: int) -> bool:
            last_known = bar - horizon - 1  # state j's outcome is known at bar j + horizon < bar
            if bar < first_state or last_known - first_state + 1 < config.k:
                return False
            states = vectors[first_state : last_known + 1]
            similarity = states @ vectors[bar]
            # Stable order: equal similarities go to the earlier state, whatever the platform's sort.
            nearest = np.argsort(-similarity, kind="stable")[: config.k]
            vote = float(signs[first_state + nearest].sum())
            return side * vote < 0

        return apply_vetoes(frame, veto)


def entry_bars(frame: SignalFrame) -> np.ndarray:
    """The bars on which `frame` enters (a long or a short from flat, or a flip) when nothing is vetoed.

    For a base that never repeats a decision these are the bars `apply_vetoes` asks about, whatever it vetoes.
    """
    entries: list[int] = []
    position = 0.0
    for bar in (int(bar) for bar in frame.decisions()):
        wanted = float(frame.target[bar])
        if wanted not in (position, 0.0):
            entries.append(bar)
        position = wanted
    return np.array(entries, dtype=np.int64)


def random_vetoes(
    frame: SignalFrame, folds: np.ndarray, shares: Sequence[float], seed: int | Sequence[int]
) -> SignalFrame:
    """Return `frame` with, in each fold, a share of its entries chosen at random vetoed (`apply_vetoes`).

    `folds` gives each bar's fold label (0, 1, ...; e.g. `neuraltrade.research.memory_study.fold_of_bars`) and
    ``shares[f]`` the share of the entries (`entry_bars`) in fold f to veto: exactly
    ``floor(shares[f] * entries + 0.5)`` of them, drawn uniformly without replacement, fold by fold in order,
    by ``numpy.random.default_rng(seed)``; folds beyond `shares` keep every entry. The same seed vetoes the
    same entries.
    """
    labels = np.asarray(folds)
    if labels.shape != frame.target.shape:
        raise ValidationError(f"{len(frame.target)} bars need as many fold labels, were given {labels.shape}")
    wanted = np.asarray(shares, dtype=np.float64)
    if wanted.ndim != 1 or not np.all((wanted >= 0.0) & (wanted <= 1.0)):
        raise ConfigError(f"veto shares must be one share in [0, 1] per fold, were {shares!r}")
    entries = entry_bars(frame)
    generator = np.random.default_rng(seed)
    vetoed: set[int] = set()
    for fold, share in enumerate(wanted):
        members = entries[labels[entries] == fold]
        count = int(np.floor(share * len(members) + 0.5))
        if count:
            vetoed.update(int(bar) for bar in generator.choice(members, size=count, replace=False))
    return apply_vetoes(frame, lambda bar, side: bar in vetoed)


@dataclass(frozen=True, kw_only=True)
class RandomVetoConfig(StrategyConfig):
    """Parameters of `RandomVeto`: the base strategy, the share of its entries to veto in each fold (by fold
    label), and the draw's seed."""

    base: str
    base_parameters: Mapping[str, Any] = field(default_factory=dict)
    shares: tuple[float, ...] = ()
    seed: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if any(not 0.0 <= share <= 1.0 for share in self.shares):
            raise ConfigError(f"random_veto shares must lie in [0, 1], were {self.shares!r}")
        if not self.seed or any(isinstance(part, bool) or not isinstance(part, int) or part < 0 for part in self.seed):
            raise ConfigError(f"random_veto seed must be one or more integers >= 0, was {self.seed!r}")


class RandomVeto(Strategy):
    """The base strategy with, in each fold, a given share of its entries vetoed at random (`random_vetoes`).

    Parameters
    ----------
    config
        The shares per fold and the seed.
    base
        The base strategy (its name must be ``config.base``).
    folds
        The fold label of each bar of the history it will be given.
    """

    name: ClassVar[str] = "random_veto"
    config: RandomVetoConfig

    def __init__(self, config: RandomVetoConfig, base: Strategy, folds: np.ndarray) -> None:
        super().__init__(config)
        _check_base("random_veto", config.base, base)
        self.base = base
        self._folds = np.asarray(folds)

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the base's decisions with the configured share of entries vetoed at random in each fold."""
        return random_vetoes(self.base.signals(history), self._folds, self.config.shares, self.config.seed)
