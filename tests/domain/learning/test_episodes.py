"""Episodes: every closed trade of a real run becomes one, with its outcome, lineage and point in time."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from neuraltrade.backtest import BacktestConfig, BacktestResult, ClosedTrade, ExitReason, run_backtest
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import Episode, EpisodeConfig, episode_from_trade
from neuraltrade.learning.regime import state_features
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from neuraltrade.timestamps import from_microseconds
from neuraltrade.types import Observation
from tests.domain.backtest_support import history, market, scripted


def walk(seed: int, count: int = 300, symbol: str = "A", days: list[int] | None = None) -> PriceHistory:
    generator = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, count)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(generator.normal(0, 0.005, count))
    high = np.maximum(open_, close) * (1 + generator.uniform(0, 0.01, count))
    low = np.minimum(open_, close) * (1 - generator.uniform(0, 0.01, count))
    return history(symbol, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), days=days)


def at(prices: PriceHistory, bar: int) -> datetime:
    return from_microseconds(int(prices.timestamps[bar]))


def episodes_of(result: BacktestResult, config: EpisodeConfig | None = None) -> list[Episode | None]:
    return [
        episode_from_trade(
            trade,
            result.market.histories[trade.symbol],
            trade_id=stable_id("trade", result.run_id, number),
            run_id=result.run_id,
            strategy=result.strategy.name,
            strategy_id=result.strategy.strategy_id,
            config=config or EpisodeConfig(),
        )
        for number, trade in enumerate(result.trades)
    ]


def check_episode(episode: Episode, trade: ClosedTrade, prices: PriceHistory) -> None:
    assert episode.net_return == trade.return_pct / 100
    assert episode.pnl == trade.pnl
    assert episode.outcome_known_at >= episode.exit_time >= episode.entry_time >= episode.decision_time
    assert -episode.max_adverse_excursion <= episode.gross_return <= episode.max_favourable_excursion
    assert episode.side == (1 if trade.size > 0 else -1)
    assert at(prices, episode.entry_bar) == trade.entry_time and at(prices, episode.exit_bar) == trade.exit_time
    assert episode.window_end_bar == max(episode.exit_bar, episode.entry_bar + episode.horizon_bars)
    assert episode.outcome_known_at == at(prices, episode.window_end_bar)
    assert episode.entry_observation_id == Observation.id_for(prices.symbol, episode.decision_time)
    assert episode.decision_time == at(prices, episode.decision_bar)
    assert (episode.signal_id, episode.entry_fill_id, episode.exit_order_id) == (
        trade.signal_id,
        trade.entry_fill_id,
        trade.exit_order_id,
    )
    assert Episode.from_canonical(episode.canonical_bytes()) == episode


def test_every_closed_trade_of_a_real_run_is_an_episode_once_its_window_has_closed():
    prices = walk(1, count=400)
    config = BacktestConfig(commission=0.002, close_at_end=True)
    result = run_backtest(market(prices), SmaCross(SmaCrossConfig(fast=5, slow=15)), config)
    assert len(result.trades) > 20
    built = episodes_of(result)
    sides = set()
    for trade, episode in zip(result.trades, built, strict=True):
        entry_bar = int(np.searchsorted(prices.timestamps, int(prices.timestamps[trade.entry_bar])))
        if max(trade.exit_bar, entry_bar + 10) >= len(prices):
            assert episode is None
            continue
        assert episode is not None
        check_episode(episode, trade, prices)
        # One timeline: the decision bar is the trade's own.
        assert episode.decision_bar == trade.decision_bar
        assert episode.strategy == "sma_cross" and episode.run_id == result.run_id
        assert episode.holding_bars == trade.exit_bar - trade.entry_bar
        sides.add(episode.side)
    assert sides == {1, -1}
    # Closed at the end: its window has not closed, so it is left for a later night.
    assert result.trades[-1].exit_reason is ExitReason.END and built[-1] is None


def test_stops_take_profits_and_costs_of_a_scripted_run_are_carried_into_episodes():
    prices = walk(2, count=120)
    script = {"A": {10: 1, 30: 0, 40: -1, 60: 0, 70: 1, 90: 0}}
    details = {"A": {"stop_loss": {10: 0.01, 40: 0.03, 70: 0.2}, "take_profit": {10: 0.5, 40: 0.01, 70: 0.02}}}
    config = BacktestConfig(commission=0.001, spread=0.002)
    result = run_backtest(market(prices), scripted(script, details), config)
    reasons = {trade.exit_reason for trade in result.trades}
    assert ExitReason.STOP_LOSS in reasons or ExitReason.TAKE_PROFIT in reasons
    for trade, episode in zip(result.trades, episodes_of(result), strict=True):
        assert episode is not None
        check_episode(episode, trade, prices)
        assert episode.exit_reason == trade.exit_reason.value
        assert episode.gross_return > episode.net_return  # commission and spread cost something


def test_in_a_run_over_symbols_with_gaps_bars_are_the_symbol_s_own():
    first = walk(3, count=200, symbol="A")
    days = [day for day in range(230) if day % 7 not in (2, 3)][:160]
    second = walk(4, count=160, symbol="B", days=days)
    result = run_backtest(market(first, second), SmaCross(SmaCrossConfig(fast=5, slow=15)))
    checked = 0
    for trade, episode in zip(result.trades, episodes_of(result), strict=True):
        if episode is None or trade.symbol != "B":
            continue
        check_episode(episode, trade, second)
        assert episode.decision_bar == episode.entry_bar - 1
        assert episode.entry_bar != trade.entry_bar  # the timeline's index is not the symbol's
        checked += 1
    assert checked > 3


def test_a_fill_on_the_decision_bar_s_close_is_decided_on_that_bar():
    prices = walk(5, count=80)
    result = run_backtest(market(prices), scripted({"A": {20: 1, 25: 0}}), BacktestConfig(trade_on_close=True))
    (episode,) = episodes_of(result)
    assert episode is not None
    assert episode.decision_bar == episode.entry_bar == 20


def test_a_decision_bar_given_by_the_caller_wins():
    prices = walk(5, count=80)
    result = run_backtest(market(prices), scripted({"A": {20: 1, 25: 0}}))
    (trade,) = result.trades
    episode = episode_from_trade(
        trade, prices, trade_id=uuid.UUID(int=1), run_id=None, strategy="s", strategy_id="s", decision_bar=18
    )
    assert episode is not None and episode.decision_bar == 18 and trade.decision_bar == 20
    assert episode.decision_time == at(prices, 18)


def hand_trade(prices: PriceHistory, entry: int, exit_: int, size: float = 10.0, **changes: Any) -> ClosedTrade:
    fields: dict[str, Any] = {
        "symbol": prices.symbol,
        "entry_bar": entry,
        "exit_bar": exit_,
        "entry_time": at(prices, entry),
        "exit_time": at(prices, exit_),
        "size": size,
        "entry_price": float(prices.open[entry]),
        "exit_price": float(prices.open[exit_]),
        "commission": 0.0,
        "signal_id": uuid.UUID(int=7),
        "entry_order_id": uuid.UUID(int=8),
        "exit_order_id": uuid.UUID(int=9),
        "entry_fill_id": uuid.UUID(int=10),
        "exit_fill_id": uuid.UUID(int=11),
        "decision_bar": entry - 1,
    }
    return ClosedTrade(**{**fields, **changes})


def build(trade: ClosedTrade, prices: PriceHistory, **options: Any) -> Episode | None:
    return episode_from_trade(
        trade,
        prices,
        trade_id=uuid.UUID(int=99),
        run_id=None,
        strategy="sma_cross",
        strategy_id="sma_cross()",
        **options,
    )


def test_excursions_benchmark_and_window_of_a_hand_built_trade():
    opens = [100.0] * 30
    highs = [101.0] * 30
    lows = [99.0] * 30
    closes = [100.0] * 30
    highs[12], lows[13], closes[9], closes[14] = 110.0, 95.0, 98.0, 104.0
    prices = history("A", opens, highs, lows, closes)
    long = build(hand_trade(prices, 10, 14), prices)
    assert long is not None
    assert long.max_favourable_excursion == pytest.approx(0.10)
    assert long.max_adverse_excursion == pytest.approx(0.05)
    assert long.benchmark_return == pytest.approx(104.0 / 98.0 - 1)
    assert long.window_end_bar == 20 and long.outcome_known_at == at(prices, 20)
    assert long.holding_bars == 4 and long.holding_seconds == 4 * 86_400
    short = build(hand_trade(prices, 10, 14, size=-10.0), prices)
    assert short is not None
    assert short.max_favourable_excursion == pytest.approx(0.05)
    assert short.max_adverse_excursion == pytest.approx(0.10)
    assert short.id == stable_id("episode", uuid.UUID(int=99))


def test_a_trade_held_past_the_horizon_is_known_at_its_exit_and_one_without_a_closed_window_is_not_built():
    prices = walk(6, count=60)
    late = build(hand_trade(prices, 10, 35), prices)
    assert late is not None and late.window_end_bar == 35 and late.outcome_known_at == late.exit_time
    # 60 bars: a window ending at bar 59 has closed, one ending at bar 60 has not.
    assert build(hand_trade(prices, 45, 47), prices, config=EpisodeConfig(horizon_bars=15)) is None
    assert build(hand_trade(prices, 45, 47), prices, config=EpisodeConfig(horizon_bars=14)) is not None


def test_an_episode_never_reads_a_bar_after_its_window():
    prices = walk(7, count=60)
    episode = build(hand_trade(prices, 10, 14), prices)
    assert episode is not None
    end = episode.window_end_bar + 1
    changed = history(
        "A",
        np.r_[prices.open[:end], prices.open[end:] * 3].tolist(),
        np.r_[prices.high[:end], prices.high[end:] * 3].tolist(),
        np.r_[prices.low[:end], prices.low[end:] * 3].tolist(),
        np.r_[prices.close[:end], prices.close[end:] * 3].tolist(),
    )
    assert build(hand_trade(prices, 10, 14), changed) == episode


def test_state_features_are_the_decision_bar_s_with_missing_ones_as_zero():
    prices = walk(8, count=150)
    early = build(hand_trade(prices, 10, 14), prices)
    late = build(hand_trade(prices, 120, 124), prices)
    assert early is not None and late is not None
    assert early.state_features == (0.0, 0.0, 0.0, 0.0)
    assert late.state_features == tuple(state_features(prices, 119))


def test_signal_links_are_kept_and_round_trip():
    prices = walk(9, count=60)
    links = (CausalLink(cause_id=uuid.UUID(int=5), cause_kind=CauseKind.PATTERN, relation=Relation.GATED_BY),)
    episode = build(hand_trade(prices, 10, 14), prices, signal_links=links)
    assert episode is not None and episode.signal_links == links
    assert Episode.from_canonical(episode.canonical_bytes()) == episode


def test_broken_episodes_and_configs_are_refused_by_name():
    prices = walk(10, count=60)
    episode = build(hand_trade(prices, 10, 14), prices)
    assert episode is not None
    with pytest.raises(ValidationError, match="side"):
        dataclasses.replace(episode, side=0)
    with pytest.raises(ValidationError, match="naive"):
        dataclasses.replace(episode, exit_time=datetime(2024, 1, 20))
    with pytest.raises(ValidationError, match="times must not decrease"):
        dataclasses.replace(episode, outcome_known_at=episode.entry_time)
    with pytest.raises(ValidationError, match="window_end_bar"):
        dataclasses.replace(episode, window_end_bar=episode.window_end_bar + 1)
    with pytest.raises(ValidationError, match="its id is"):
        dataclasses.replace(episode, id=uuid.UUID(int=3))
    with pytest.raises(ValidationError, match="max_adverse_excursion"):
        dataclasses.replace(episode, max_adverse_excursion=-0.1)
    with pytest.raises(ValidationError, match="exit_reason 'bored'"):
        dataclasses.replace(episode, exit_reason="bored")
    with pytest.raises(ConfigError, match="horizon_bars"):
        EpisodeConfig(horizon_bars=0)
    with pytest.raises(ValidationError, match="history of B"):
        build(hand_trade(prices, 10, 14), dataclasses.replace(prices, symbol="B"))
    assert EpisodeConfig().digest == EpisodeConfig(horizon_bars=10).digest != EpisodeConfig(horizon_bars=5).digest
