"""The reflexion engine: each lesson in its situation and not in the converse one, the text, determinism."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from neuraltrade.backtest import BacktestConfig, run_backtest
from neuraltrade.canonical import stable_id
from neuraltrade.errors import ConfigError, ValidationError
from neuraltrade.learning.episodes import Episode, episode_from_trade
from neuraltrade.learning.judge import Verdict, judge
from neuraltrade.learning.reflexion import Critique, Lesson, ReflexionConfig, ReflexionEngine
from neuraltrade.market.history import PriceHistory
from neuraltrade.strategies.sma_cross import SmaCross, SmaCrossConfig
from neuraltrade.timestamps import from_microseconds
from tests.domain.backtest_support import history, market

TRADE = uuid.UUID(int=42)
ENTRY, EXIT, END = 110, 115, 120
FLAT = (0.0, 0.0, 0.0, 0.5)
UP_TREND = (1.0, 0.0, 0.0, 0.5)
DOWN_TREND = (-1.0, 0.0, 0.0, 0.5)


def prices(closes: dict[int, float] | None = None) -> PriceHistory:
    """150 flat bars at 100 (a flat, normal market), with closes changed where given."""
    values = [100.0] * 150
    for bar, close in (closes or {}).items():
        values[bar] = close
    return history("NVDA", values)


def at(bars: PriceHistory, bar: int) -> datetime:
    return from_microseconds(int(bars.timestamps[bar]))


def an_episode(
    bars: PriceHistory,
    *,
    side: int = 1,
    features: tuple[float, ...] = FLAT,
    exit_reason: str = "signal",
    exit_price: float = 100.0,
    gross: float | None = None,
    net: float | None = None,
    favourable: float = 0.0,
) -> Episode:
    gross = side * (exit_price / 100.0 - 1) if gross is None else gross
    return Episode(
        id=stable_id("episode", TRADE),
        trade_id=TRADE,
        run_id=None,
        strategy="sma_cross",
        strategy_id="sma_cross(fast=10,slow=20)",
        symbol="NVDA",
        side=side,
        size=10.0 * side,
        signal_id=None,
        signal_links=(),
        entry_observation_id=bars.observation_id(ENTRY - 1),
        entry_order_id=None,
        exit_order_id=None,
        entry_fill_id=None,
        exit_fill_id=None,
        decision_time=at(bars, ENTRY - 1),
        entry_time=at(bars, ENTRY),
        exit_time=at(bars, EXIT),
        outcome_known_at=at(bars, END),
        decision_bar=ENTRY - 1,
        entry_bar=ENTRY,
        exit_bar=EXIT,
        window_end_bar=END,
        entry_price=100.0,
        exit_price=exit_price,
        pnl=10.0 * side * (exit_price - 100.0),
        net_return=gross if net is None else net,
        gross_return=gross,
        holding_bars=EXIT - ENTRY,
        holding_seconds=(EXIT - ENTRY) * 86_400.0,
        max_adverse_excursion=max(0.0, -gross),
        max_favourable_excursion=max(favourable, gross, 0.0),
        benchmark_return=0.0,
        exit_reason=exit_reason,
        state_features=features,
        horizon_bars=10,
    )


def a_verdict(
    episode: Episode, *, success: bool = False, score: float = 0.0, volatility: float = 0.01, barrier: str = "vertical"
) -> Verdict:
    return Verdict(
        id=stable_id("verdict", episode.id, "judge"),
        episode_id=episode.id,
        judge_digest="judge",
        success=success,
        score=score,
        barrier=barrier,
        barrier_bar=END,
        barrier_return=score,
        benchmark_return=0.0,
        volatility=volatility,
        known_at=episode.outcome_known_at,
    )


def lessons(episode: Episode, bars: PriceHistory, config: ReflexionConfig | None = None, **verdict: Any) -> set[str]:
    critique = ReflexionEngine(config).critique(episode, a_verdict(episode, **verdict), bars)
    return set(critique.lessons)


@pytest.mark.parametrize(
    ("features", "side", "expected", "absent"),
    [
        (UP_TREND, 1, "with_trend", "against_trend"),
        (DOWN_TREND, -1, "with_trend", "against_trend"),
        (UP_TREND, -1, "against_trend", "with_trend"),
        (DOWN_TREND, 1, "against_trend", "with_trend"),
    ],
)
def test_trading_with_or_against_the_trend(features: tuple[float, ...], side: int, expected: str, absent: str):
    found = lessons(an_episode(prices(), side=side, features=features), prices())
    assert expected in found and absent not in found


def test_a_flat_market_has_no_trend_lesson():
    found = lessons(an_episode(prices()), prices())
    assert not found & {"with_trend", "against_trend"}


def test_a_stop_followed_by_a_recovery_past_the_entry_was_too_tight():
    recovered = prices({EXIT: 97.0, 118: 101.0})
    stayed_down = prices({EXIT: 97.0, 118: 99.0})
    assert "stop_too_tight" in lessons(an_episode(recovered, exit_reason="stop_loss", exit_price=97.0), recovered)
    assert "stop_too_tight" not in lessons(
        an_episode(stayed_down, exit_reason="stop_loss", exit_price=97.0), stayed_down
    )
    # The same recovery after an exit by signal says nothing about a stop.
    assert "stop_too_tight" not in lessons(an_episode(recovered, exit_price=97.0), recovered)
    short = prices({EXIT: 103.0, 119: 99.0})
    assert "stop_too_tight" in lessons(an_episode(short, side=-1, exit_reason="stop_loss", exit_price=103.0), short)


def test_a_favourable_move_given_back_was_held_too_long():
    bars = prices()
    assert "held_too_long" in lessons(an_episode(bars, gross=0.01, favourable=0.05), bars)
    assert "held_too_long" not in lessons(an_episode(bars, gross=0.04, favourable=0.05), bars)
    # Below the threshold a favourable move is noise, whatever was given back.
    assert "held_too_long" not in lessons(an_episode(bars, gross=-0.01, favourable=0.015), bars)
    assert "held_too_long" in lessons(
        an_episode(bars, gross=-0.01, favourable=0.015), bars, ReflexionConfig(giveback_threshold=0.01)
    )


def test_a_further_move_after_the_exit_means_it_came_too_early():
    ran_on = prices({118: 105.0})
    barely = prices({118: 101.0})
    # Reach: 1 x σ 0.01 x √10 ≈ 3.2% past the exit price.
    assert "exited_too_early" in lessons(an_episode(ran_on), ran_on)
    assert "exited_too_early" not in lessons(an_episode(barely), barely)
    assert "exited_too_early" not in lessons(an_episode(ran_on, side=-1), ran_on)
    fell_on = prices({118: 95.0})
    assert "exited_too_early" in lessons(an_episode(fell_on, side=-1), fell_on)
    # A move after the window closed is not known when the critique is.
    late = prices({END + 1: 110.0})
    assert "exited_too_early" not in lessons(an_episode(late), late)


def test_a_regime_at_the_exit_unlike_the_one_at_the_decision_is_a_change():
    bars = prices()
    assert "regime_changed" in lessons(an_episode(bars, features=UP_TREND), bars)
    assert "regime_changed" in lessons(an_episode(bars, features=(0.0, 0.5, 0.0, 0.5)), bars)
    assert "regime_changed" not in lessons(an_episode(bars, features=FLAT), bars)


def test_a_gross_gain_lost_to_costs_means_costs_exceeded_the_edge():
    bars = prices()
    assert "costs_exceeded_edge" in lessons(an_episode(bars, gross=0.002, net=-0.001), bars)
    assert "costs_exceeded_edge" not in lessons(an_episode(bars, gross=0.01, net=0.008), bars)
    assert "costs_exceeded_edge" not in lessons(an_episode(bars, gross=-0.01, net=-0.012), bars)


def test_high_volatility_at_the_decision_is_noted():
    bars = prices()
    assert "high_volatility_entry" in lessons(an_episode(bars, features=(0.0, 0.4, 0.0, 0.5)), bars)
    assert "high_volatility_entry" not in lessons(an_episode(bars, features=(0.0, -0.4, 0.0, 0.5)), bars)


def test_a_negative_score_lagged_the_benchmark():
    bars = prices()
    assert "lagged_benchmark" in lessons(an_episode(bars), bars, score=-0.01)
    assert "lagged_benchmark" not in lessons(an_episode(bars), bars, score=0.01)


def test_a_success_without_faults_is_a_clean_win_and_only_then():
    bars = prices()
    assert "clean_win" in lessons(an_episode(bars, features=UP_TREND, gross=0.03), bars, success=True)
    assert "clean_win" not in lessons(an_episode(bars, features=UP_TREND, gross=0.03), bars, success=False)
    assert "clean_win" not in lessons(an_episode(bars, features=DOWN_TREND, gross=0.03), bars, success=True)
    assert "clean_win" not in lessons(an_episode(bars, gross=0.01, favourable=0.05), bars, success=True)


def test_the_text_tells_strategy_side_symbol_outcome_and_lessons():
    recovered = prices({EXIT: 97.0, 118: 101.0})
    episode = an_episode(recovered, exit_reason="stop_loss", exit_price=97.0)
    critique = ReflexionEngine().critique(episode, a_verdict(episode, barrier="stop_loss"), recovered)
    assert critique.text.startswith("Long sma_cross on NVDA in a flat trend, normal volatility; held 5 bars")
    assert "exit by stop loss; lost 3.0% net (judge: stop_loss, failure)" in critique.text
    assert "Stop too tight" in critique.text
    bars = prices()
    short = an_episode(bars, side=-1, features=DOWN_TREND, exit_price=96.0)
    text = ReflexionEngine().critique(short, a_verdict(short, success=True, score=0.04), bars).text
    assert text.startswith("Short sma_cross on NVDA in a down trend") and "made 4.0% net" in text
    assert "success" in text and "Clean win." in text


def test_a_critique_is_deterministic_identified_by_its_inputs_and_round_trips():
    bars = prices({118: 105.0})
    episode = an_episode(bars, features=UP_TREND, gross=0.01, favourable=0.05)
    verdict = a_verdict(episode, success=True)
    first = ReflexionEngine().critique(episode, verdict, bars)
    assert ReflexionEngine(ReflexionConfig()).critique(episode, verdict, bars) == first
    assert first.id == stable_id("critique", episode.id, verdict.id, ReflexionConfig().digest)
    assert first.known_at == episode.outcome_known_at and first.success is True
    assert list(first.lessons) == sorted(first.lessons)
    assert Critique.from_canonical(first.canonical_bytes()) == first
    other = ReflexionEngine(ReflexionConfig(giveback_threshold=0.1)).critique(episode, verdict, bars)
    assert other.id != first.id and "held_too_long" not in other.lessons


def test_mismatched_inputs_and_bad_values_are_refused_by_name():
    bars = prices()
    episode = an_episode(bars)
    stranger = dataclasses.replace(
        a_verdict(episode), episode_id=uuid.UUID(int=1), id=stable_id("verdict", uuid.UUID(int=1), "judge")
    )
    with pytest.raises(ValidationError, match="not " + str(episode.id)):
        ReflexionEngine().critique(episode, stranger, bars)
    with pytest.raises(ValidationError, match="window ends at bar 120"):
        ReflexionEngine().critique(episode, a_verdict(episode), bars.head(END))
    with pytest.raises(ConfigError, match="giveback_share"):
        ReflexionConfig(giveback_share=1.5)
    critique = ReflexionEngine().critique(episode, a_verdict(episode), bars)
    with pytest.raises(ValidationError, match="lessons"):
        dataclasses.replace(critique, lessons=("bad_luck",))
    with pytest.raises(ValidationError, match="trend 'sideways'"):
        dataclasses.replace(critique, exit_trend="sideways")


def test_every_episode_of_a_real_run_is_critiqued_from_bars_up_to_its_window_only():
    generator = np.random.default_rng(21)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, 400)))
    bars = history("NVDA", close.tolist())
    result = run_backtest(market(bars), SmaCross(SmaCrossConfig(fast=5, slow=15)), BacktestConfig(commission=0.003))
    engine = ReflexionEngine()
    seen: set[str] = set()
    for number, trade in enumerate(result.trades):
        episode = episode_from_trade(
            trade, bars, trade_id=uuid.UUID(int=number), run_id=result.run_id, strategy="sma_cross", strategy_id="x"
        )
        if episode is None:
            continue
        verdict = judge(episode, bars)
        assert verdict is not None
        critique = engine.critique(episode, verdict, bars)
        end = episode.window_end_bar + 1
        later = history("NVDA", np.r_[close[:end], close[end:] * 2].tolist())
        assert engine.critique(episode, verdict, later) == critique
        assert set(critique.lessons) <= {lesson.value for lesson in Lesson}
        assert ("clean_win" in critique.lessons) <= critique.success
        assert critique.known_at == episode.outcome_known_at
        seen.update(critique.lessons)
    assert len(seen) >= 5
