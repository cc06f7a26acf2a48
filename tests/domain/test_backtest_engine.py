"""The backtester as a whole: no look-ahead, the fast path equal to the event loop, results that identify themselves."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuraltrade.backtest import BacktestConfig, BrokerEventKind, ClosedTrade, OpenTrade, run_backtest
from neuraltrade.backtest.run_spec import run_spec
from neuraltrade.errors import LookAheadError
from neuraltrade.market.history import PriceHistory
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig, verify_causality
from tests.domain.backtest_support import history, market, scripted


@dataclass(frozen=True, kw_only=True)
class PeekConfig(StrategyConfig):
    peek: bool = True


class Peeker(Strategy):
    """Goes long before every rise: it reads tomorrow's close, which no live strategy can."""

    name = "peeker"

    def signals(self, history: PriceHistory) -> SignalFrame:
        close = history.close
        target = np.full(len(close), np.nan)
        rises = np.zeros(len(close), dtype=bool)
        rises[:-1] = close[1:] > close[:-1]
        target[rises] = 1.0
        target[~rises] = 0.0
        return SignalFrame(target=target, confidence=np.where(np.isnan(target), np.nan, 1.0))


class Honest(Strategy):
    """Goes long after a rise: it reads only today's and yesterday's close."""

    name = "honest"

    def signals(self, history: PriceHistory) -> SignalFrame:
        close = history.close
        target = np.full(len(close), np.nan)
        target[1:] = np.where(close[1:] > close[:-1], 1.0, 0.0)
        return SignalFrame(target=target, confidence=np.where(np.isnan(target), np.nan, 1.0))


def random_walk(seed: int, count: int = 300, symbol: str = "A") -> PriceHistory:
    generator = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(generator.normal(0, 0.02, count)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(generator.normal(0, 0.005, count))
    high = np.maximum(open_, close) * (1 + generator.uniform(0, 0.01, count))
    low = np.minimum(open_, close) * (1 - generator.uniform(0, 0.01, count))
    return history(symbol, open_.tolist(), high.tolist(), low.tolist(), close.tolist())


def test_a_strategy_reading_the_next_bar_is_refused():
    with pytest.raises(LookAheadError, match=r"peeker.*bar"):
        run_backtest(market(random_walk(1)), Peeker(PeekConfig()))


def test_a_strategy_reading_only_the_past_passes_the_causality_check():
    result = run_backtest(market(random_walk(1)), Honest(PeekConfig()))
    assert len(result.trades) > 10


def test_changing_later_bars_never_changes_earlier_decisions_or_fills():
    original = random_walk(2)
    cut = 150
    altered = PriceHistory(
        symbol="A",
        timestamps=original.timestamps,
        **{
            name: np.r_[getattr(original, name)[:cut], getattr(original, name)[cut:] * 1.7]
            for name in ("open", "high", "low", "close", "volume")
        },
    )
    strategy = Honest(PeekConfig())
    # Under one run id: the runs' own ids differ, since the bars (their data digest) differ.
    run_id = uuid.UUID(int=2)
    before = run_backtest(market(original), strategy, run_id=run_id)
    after = run_backtest(market(altered), strategy, run_id=run_id)
    # A trade entered by bar `cut - 1` was decided on earlier bars and filled by that bar's open.
    early = [trade for trade in before.trades if trade.exit_bar < cut]
    assert early == [trade for trade in after.trades if trade.exit_bar < cut]
    assert np.array_equal(before.equity[:cut], after.equity[:cut])


def test_verify_causality_names_the_first_bar_that_changed():
    data = random_walk(3, count=80)
    strategy = Peeker(PeekConfig())
    with pytest.raises(LookAheadError) as caught:
        verify_causality(strategy, data, strategy.signals(data), cuts=[40])
    assert caught.value.bar == 39 and caught.value.symbol == "A"


#: Examples of the property below (each runs both paths on 60 bars, in a few milliseconds).
FAST_EQUALS_LOOP_EXAMPLES = 300

targets = st.lists(st.sampled_from([np.nan, np.nan, np.nan, -1.0, 0.0, 1.0]), min_size=60, max_size=60)


@settings(max_examples=FAST_EQUALS_LOOP_EXAMPLES, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    first=targets,
    second=targets,
    two_symbols=st.booleans(),
    commission=st.sampled_from([0.0, 0.002, 0.01]),
    fixed_commission=st.sampled_from([0.0, 0.1, 1.0, 3.7]),
    spread=st.sampled_from([0.0, 0.001]),
    margin=st.sampled_from([1.0, 0.5, 0.2]),
    trade_on_close=st.booleans(),
    close_at_end=st.booleans(),
    fractional=st.booleans(),
    order_size=st.sampled_from([0.999, 0.5, 0.3, 25.0]),
)
def test_the_fast_path_equals_the_event_loop(
    seed,
    first,
    second,
    two_symbols,
    commission,
    fixed_commission,
    spread,
    margin,
    trade_on_close,
    close_at_end,
    fractional,
    order_size,
):
    histories = [random_walk(seed, 60, "A")]
    script = {"A": {bar: value for bar, value in enumerate(first) if not np.isnan(value)}}
    if two_symbols:
        histories.append(history("B", *_gappy(random_walk(seed + 1, 60, "B"))[:4], days=_gappy_days(seed)))
        script["B"] = {bar: value for bar, value in enumerate(second[: len(histories[1])]) if not np.isnan(value)}
    config = BacktestConfig(
        cash=10_000.0,
        commission=commission,
        fixed_commission=fixed_commission,
        spread=spread,
        margin=margin,
        trade_on_close=trade_on_close,
        close_at_end=close_at_end,
        fractional=fractional,
        order_size=order_size,
        verify_causality=False,
    )
    data = market(*histories)
    fast = run_backtest(data, scripted(script), config)
    loop = run_backtest(data, scripted(script), config, record_orders=True)
    assert fast.run_id == loop.run_id
    assert np.array_equal(fast.equity, loop.equity)
    assert fast.decisions == loop.decisions
    # Field by field, ids included, to the last bit.
    assert len(fast.trades) == len(loop.trades)
    for fast_trade, loop_trade in zip(fast.trades, loop.trades, strict=True):
        for name in ClosedTrade._fields:
            assert getattr(fast_trade, name) == getattr(loop_trade, name), name
    assert fast.fills == loop.fills
    assert [_open(trade) for trade in fast.open_trades] == [_open(trade) for trade in loop.open_trades]
    # Every order a closed trade or a fill names is among the orders the event loop placed.
    placed = {event.order.order_id for event in loop.events if event.kind is BrokerEventKind.PLACED}
    named = {trade.entry_order_id for trade in loop.trades} | {trade.exit_order_id for trade in loop.trades}
    assert named | {fill.order_id for fill in loop.fills} <= placed
    assert {fill.id for fill in loop.fills} >= {trade.exit_fill_id for trade in loop.trades}


def _open(trade: OpenTrade) -> dict[str, object]:
    return {field.name: getattr(trade, field.name) for field in dataclasses.fields(trade)}


def _gappy_days(seed: int) -> list[int]:
    generator = np.random.default_rng(seed)
    keep = np.sort(generator.choice(60, size=45, replace=False))
    return keep.tolist()


def _gappy(data: PriceHistory) -> tuple[list[float], list[float], list[float], list[float]]:
    return (data.open[:45].tolist(), data.high[:45].tolist(), data.low[:45].tolist(), data.close[:45].tolist())


def test_the_run_id_is_stable_for_the_same_strategy_configuration_and_bars():
    data = market(random_walk(4))
    first = run_backtest(data, Honest(PeekConfig()))
    again = run_backtest(data, Honest(PeekConfig()))
    other = run_backtest(data, Honest(PeekConfig()), BacktestConfig(commission=0.001))
    assert first.run_id == again.run_id != other.run_id
    assert first.run_id == run_spec(Honest(PeekConfig()), BacktestConfig(), data).run_id
    given = uuid.UUID(int=9)
    assert run_backtest(data, Honest(PeekConfig()), run_id=given).run_id == given


def test_every_signal_links_the_observation_of_its_bar():
    data = market(random_walk(5))
    result = run_backtest(data, Honest(PeekConfig()))
    signals = result.signals()
    assert len(signals) == len(result.decisions) > 0
    first = signals[0]
    assert first.causal_links[0] == CausalLink(
        cause_id=data.histories["A"].observation_id(result.decisions[0].symbol_bar),
        cause_kind=CauseKind.OBSERVATION,
        relation=Relation.OBSERVED,
    )
    assert first.strategy_id == result.strategy.strategy_id
