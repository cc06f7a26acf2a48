"""Behaviour of the rule-based strategies (`sma_cross`, `mean_reversion`, `momentum`), the causality check and
the registry."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.errors import ConfigError, LookAheadError, UnknownStrategy
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig, verify_causality
from neuraltrade.strategies.indicators import crossed_above, decide_on_change, moving_average
from neuraltrade.strategies.mean_reversion import MeanReversion, MeanReversionConfig
from neuraltrade.strategies.memory_vote import MemoryVote
from neuraltrade.strategies.momentum import Momentum, MomentumConfig
from neuraltrade.strategies.needs import Need, Supplies
from neuraltrade.strategies.registry import STRATEGIES, build_config, build_strategy, parameter_names
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from tests.domain.strategy_support import BruteForceMemory, MemoryContext, real_history

PROPERTY = settings(max_examples=40, deadline=None)
CROSS_PAIRS = [(fast, slow) for fast in (2, 5, 10, 20, 50) for slow in (7, 20, 30, 100, 200) if fast < slow]


def random_walk(count: int, seed: int, volatility: float = 0.02) -> PriceHistory:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(volatility * rng.standard_normal(count)))
    opens = np.concatenate(([close[0]], close[:-1]))
    return PriceHistory(
        symbol="WALK",
        timestamps=np.arange(count, dtype=np.int64) * 86_400_000_000 + 1_600_000_000_000_000,
        open=opens,
        high=np.maximum(opens, close) * 1.01,
        low=np.minimum(opens, close) * 0.99,
        close=close,
        volume=np.full(count, 1e5),
    )


def decided_sequence(frame: SignalFrame) -> np.ndarray:
    return frame.target[frame.decisions()]


# -- sma_cross -------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["NVDA", "ORCL", "YHOO"])
def test_sma_cross_decides_on_exactly_the_bars_a_rolling_mean_crossover_fires(symbol: str) -> None:
    history = real_history(symbol)
    close = pd.Series(history.close)
    for fast, slow in CROSS_PAIRS:
        frame = SmaCross(SmaCrossConfig(fast=fast, slow=slow)).signals(history)
        # backtesting.py's example: SMA = pd.Series(values).rolling(n).mean(), crossover on the last two values.
        first, second = close.rolling(fast).mean(), close.rolling(slow).mean()
        up = (first.shift(1) < second.shift(1)) & (first > second)
        down = (second.shift(1) < first.shift(1)) & (second > first)
        assert np.array_equal(np.flatnonzero(frame.target == 1.0), np.flatnonzero(up)), (fast, slow)
        assert np.array_equal(np.flatnonzero(frame.target == -1.0), np.flatnonzero(down)), (fast, slow)


def test_sma_cross_warms_up_for_as_many_bars_as_backtesting_py_skips() -> None:
    frame = SmaCross(SmaCrossConfig(fast=10, slow=30)).signals(real_history("NVDA"))
    assert frame.warmup == 30
    assert frame.decisions()[0] >= frame.warmup


def test_sma_cross_running_sum_averages_round_like_a_running_sum_and_agree_to_1e_12() -> None:
    close = real_history("NVDA").close
    running = moving_average(close, 20, "running_sum")
    sums = np.cumsum(close)
    expected = np.concatenate(([sums[19]], sums[20:] - sums[:-20])) / 20
    assert np.array_equal(running[19:], expected)
    np.testing.assert_allclose(running, moving_average(close, 20), rtol=1e-12, equal_nan=True)
    assert np.array_equal(moving_average(close, 20), pd.Series(close).rolling(20).mean().to_numpy(), equal_nan=True)


def test_a_cross_needs_strict_inequality_on_both_bars() -> None:
    first = np.array([np.nan, 1.0, 2.0, 2.0, 3.0, 1.0, 2.0])
    second = np.array([1.0, 1.5, 2.0, 2.5, 2.5, 2.0, 2.0])
    # bar 2 touches (2 == 2), bar 4 crosses from below, bar 6 touches again.
    assert list(np.flatnonzero(crossed_above(first, second))) == [4]


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"fast": 20, "slow": 20}, "fast (20)"),
        ({"fast": 0}, "fast"),
        ({"slow": 2.5}, "slow"),
        ({"average": "ema"}, "ema"),
    ],
)
def test_sma_cross_refuses_parameters_naming_the_value(parameters: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        SmaCrossConfig(**parameters)  # type: ignore[arg-type]


# -- mean_reversion ---------------------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 10_000), entry=st.floats(1.0, 2.5), exit_share=st.floats(0.0, 0.9))
def test_mean_reversion_enters_against_large_z_and_exits_near_the_mean(
    seed: int, entry: float, exit_share: float
) -> None:
    config = MeanReversionConfig(lookback=15, entry_z=entry, exit_z=entry * exit_share)
    frame = MeanReversion(config).signals(random_walk(400, seed))
    z = frame.features["z_score"]
    for bar in frame.decisions():
        wanted = frame.target[bar]
        if wanted == -1.0:
            assert z[bar] > config.entry_z
        elif wanted == 1.0:
            assert z[bar] < -config.entry_z
        else:
            assert abs(z[bar]) < config.exit_z
        assert 0.0 <= frame.confidence[bar] <= 1.0
    sequence = decided_sequence(frame)
    assert not np.any(sequence[1:] == sequence[:-1]), "a decision repeats the one before it"


def test_mean_reversion_confidence_grows_with_the_z_score() -> None:
    frame = MeanReversion(MeanReversionConfig(lookback=20, entry_z=1.5, exit_z=0.2)).signals(real_history("NVDA"))
    entries = frame.decisions()[np.abs(frame.target[frame.decisions()]) == 1.0]
    z = np.abs(frame.features["z_score"][entries])
    np.testing.assert_allclose(frame.confidence[entries], np.minimum(1.0, z / 3.0))


def test_mean_reversion_gives_its_stop_with_every_entry_and_only_then() -> None:
    frame = MeanReversion(MeanReversionConfig(stop_loss=0.05)).signals(real_history("NVDA"))
    assert frame.stop_loss is not None
    entries = np.isin(frame.target, (-1.0, 1.0))
    assert np.all(frame.stop_loss[entries] == 0.05)
    assert np.all(np.isnan(frame.stop_loss[~entries]))


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"lookback": 1}, "lookback"),
        ({"entry_z": -1.0}, "entry_z"),
        ({"entry_z": 1.0, "exit_z": 1.0}, "exit_z"),
        ({"stop_loss": 0.0}, "stop_loss"),
        ({"entry_z": float("nan")}, "nan"),
    ],
)
def test_mean_reversion_refuses_parameters_naming_the_value(parameters: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        MeanReversionConfig(**parameters)  # type: ignore[arg-type]


# -- momentum ---------------------------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 10_000), lookback=st.integers(1, 40), rebalance=st.integers(1, 15))
def test_momentum_decides_on_rebalance_bars_with_the_sign_of_the_lookback_return(
    seed: int, lookback: int, rebalance: int
) -> None:
    history = random_walk(300, seed)
    frame = Momentum(MomentumConfig(lookback=lookback, rebalance=rebalance)).signals(history)
    decided = frame.decisions()
    assert np.all((decided - lookback) % rebalance == 0)
    expected = np.sign(history.close[decided] / history.close[decided - lookback] - 1.0)
    assert np.array_equal(frame.target[decided], expected)
    sequence = decided_sequence(frame)
    assert not np.any(sequence[1:] == sequence[:-1]), "a decision repeats the one before it"


def test_momentum_scales_confidence_down_when_volatility_exceeds_its_target() -> None:
    config = MomentumConfig(lookback=20, rebalance=1, volatility_target=0.02, volatility_lookback=20)
    frame = Momentum(config).signals(real_history("NVDA"))
    decided = frame.decisions()
    expected = np.minimum(1.0, 0.02 / frame.features["volatility"][decided])
    np.testing.assert_allclose(frame.confidence[decided], expected)
    assert expected.min() < 0.5 < expected.max()


# -- every rule-based strategy ------------------------------------------------------------------------


RULE_BASED = [
    SmaCross(SmaCrossConfig(fast=10, slow=30)),
    SmaCross(SmaCrossConfig(fast=5, slow=20, average="running_sum")),
    MeanReversion(MeanReversionConfig(lookback=20, entry_z=1.5, exit_z=0.3, stop_loss=0.1)),
    Momentum(MomentumConfig(lookback=60, rebalance=5)),
    Momentum(MomentumConfig(lookback=20, rebalance=1, volatility_target=0.02)),
]


@pytest.mark.parametrize("strategy", RULE_BASED, ids=lambda strategy: strategy.strategy_id)
def test_every_rule_based_strategy_gives_valid_causal_signals_on_real_data(strategy: Strategy) -> None:
    history = real_history("NVDA")
    frame = strategy.signals(history)
    frame.check(history, strategy.strategy_id)
    # Cuts just after decisions too: a look-ahead shows on the last bar of a prefix.
    after_decisions = [int(bar) + 1 for bar in frame.decisions()[::10]]
    verify_causality(strategy, history, frame, cuts=sorted({1, 2, 100, 1001, 2500, *after_decisions}))
    assert len(frame.decisions()) > 10


@pytest.mark.parametrize("strategy", RULE_BASED, ids=lambda strategy: strategy.strategy_id)
def test_every_rule_based_strategy_accepts_a_history_shorter_than_its_warmup(strategy: Strategy) -> None:
    history = real_history("NVDA").head(3)
    frame = strategy.signals(history)
    frame.check(history, strategy.strategy_id)
    assert len(frame.decisions()) == 0


class TomorrowsClose(Strategy):
    """Long when tomorrow closes higher: a strategy that reads the future (one bar of it)."""

    name: ClassVar[str] = "tomorrows_close"

    def __init__(self, *, sparse: bool) -> None:
        super().__init__(StrategyConfig())
        self.sparse = sparse

    def signals(self, history: PriceHistory) -> SignalFrame:
        opinion = np.full(len(history), np.nan)
        opinion[:-1] = np.sign(np.diff(history.close))
        target = decide_on_change(opinion) if self.sparse else opinion
        return SignalFrame(target=target, confidence=np.ones(len(history)))


def test_a_strategy_reading_tomorrows_close_is_caught_as_look_ahead() -> None:
    strategy = TomorrowsClose(sparse=False)
    history = real_history("NVDA")
    frame = strategy.signals(history)
    frame.check(history, strategy.strategy_id)
    with pytest.raises(LookAheadError, match="tomorrows_close"):
        verify_causality(strategy, history, frame)


def test_a_look_ahead_that_decides_rarely_is_caught_by_cutting_just_after_its_decisions() -> None:
    # The look-ahead shows only on the last bar of a prefix, so cuts must end on decision bars.
    strategy = TomorrowsClose(sparse=True)
    history = real_history("NVDA")
    frame = strategy.signals(history)
    with pytest.raises(LookAheadError, match=r"at bar \d+"):
        verify_causality(strategy, history, frame, cuts=[int(bar) + 1 for bar in frame.decisions()[5:8]])


@PROPERTY
@given(opinions=st.lists(st.sampled_from([-1.0, 0.0, 1.0, float("nan")]), max_size=60))
def test_decisions_are_emitted_exactly_where_the_opinion_changes(opinions: list[float]) -> None:
    opinion = np.array(opinions, dtype=np.float64)
    target = decide_on_change(opinion)
    last = None
    for bar, value in enumerate(opinion):
        if np.isnan(value):
            assert np.isnan(target[bar])
        elif value != last:
            assert target[bar] == value
            last = value
        else:
            assert np.isnan(target[bar])


# -- registry ---------------------------------------------------------------------------------------


def test_the_registry_builds_a_strategy_from_command_line_text() -> None:
    strategy = build_strategy("sma_cross", {"fast": "5", "slow": " 30 ", "average": "running_sum"})
    assert isinstance(strategy, SmaCross)
    assert strategy.config == SmaCrossConfig(fast=5, slow=30, average="running_sum")
    assert build_config("mean_reversion", {"entry_z": "2.5", "stop_loss": "none"}) == MeanReversionConfig(entry_z=2.5)
    assert build_config("momentum", {"volatility_target": "0.01", "lookback": 90.0}) == MomentumConfig(
        volatility_target=0.01, lookback=90
    )


def test_the_registry_names_every_strategy_with_its_parameters() -> None:
    assert sorted(STRATEGIES) == ["mean_reversion", "memory_vote", "momentum", "neural", "sma_cross"]
    assert parameter_names("sma_cross") == ["fast", "slow", "average"]


def test_an_unknown_strategy_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(UnknownStrategy, match=r"'smacross'.*mean_reversion, memory_vote, momentum, neural, sma_cross"):
        build_strategy("smacross", {})


def test_an_unknown_parameter_is_refused_listing_the_valid_ones() -> None:
    with pytest.raises(UnknownStrategy, match=r"no parameter 'window'; its parameters are fast, slow, average"):
        build_strategy("sma_cross", {"window": "10"})


@pytest.mark.parametrize(
    ("name", "parameters", "named"),
    [
        ("sma_cross", {"fast": "ten"}, "fast must be int, was 'ten'"),
        ("sma_cross", {"fast": "2.5"}, "fast must be int"),
        ("sma_cross", {"fast": "30"}, r"fast \(30\) must be less than slow \(20\)"),
        ("momentum", {"volatility_target": "fast"}, "volatility_target must be float or none"),
        ("mean_reversion", {"entry_z": "inf"}, "entry_z must be float"),
    ],
)
def test_a_parameter_value_that_does_not_fit_is_refused_naming_it(
    name: str, parameters: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        build_strategy(name, parameters)


def test_memory_vote_is_built_only_from_a_context_that_supplies_its_memory() -> None:
    with pytest.raises(ConfigError, match="'memory_vote' needs memory_searcher"):
        build_strategy("memory_vote", {"dimension": "32"})
    context = MemoryContext(BruteForceMemory())

    strategy = build_strategy("memory_vote", {"dimension": "32", "k": "7"}, context=context, symbols=["AAA"])

    assert isinstance(strategy, MemoryVote) and strategy.searcher is context.memory
    assert strategy.config.k == 7 and context.asked == [("AAA",)]
    # The strategy keeps what it was given: the run's specification names the memory by its digest.
    assert strategy.supplies.memory_digest == context.digest
    assert strategy.supplies.record() == {"memory": {"collection": "test_memory", "items": 0, "digest": context.digest}}


def test_a_strategy_that_needs_nothing_never_asks_its_context() -> None:
    context = MemoryContext(BruteForceMemory())
    strategies = [build_strategy(name, {}, context=context, symbols=["AAA"]) for name in ("sma_cross", "neural")]
    assert context.asked == [] and all(strategy.supplies == Supplies() for strategy in strategies)
    assert all(strategy.needs == frozenset() for strategy in strategies)
    assert STRATEGIES["memory_vote"][0].needs == {Need.MEMORY_SEARCHER}


def test_strategy_ids_change_with_any_parameter() -> None:
    ids = {build_strategy("sma_cross", {"fast": str(fast)}).strategy_id for fast in range(2, 12)}
    assert len(ids) == 10
    assert all(strategy_id.startswith("sma_cross-") for strategy_id in ids)


def test_the_rolling_average_is_pandas_rolling_mean_to_the_bit() -> None:
    generator = np.random.default_rng(11)
    for _ in range(200):
        values = generator.normal(0, 1, 400) * 10.0 ** generator.integers(-3, 6)
        values[generator.random(400) < 0.05] = np.nan
        window = int(generator.integers(1, 80))
        expected = pd.Series(values).rolling(window).mean().to_numpy()
        assert np.array_equal(moving_average(values, window), expected, equal_nan=True)
