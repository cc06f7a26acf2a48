"""The learning loop closed over two nights: what the first night judges gates the second night's signals.

The flows run in process (``flow.fn``: each task's plain function), over real bars in a real database.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models import repositories
from models.engine import session_scope
from models.learning_store import load_distillations, load_episodes, load_verdicts, save_episodes
from models.lineage import broken_links
from models.order_records import load_signals
from neuraltrade.canonical import stable_id
from neuraltrade.market.ingest import read_bars
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.records import CauseKind, Relation
from tasks.embed import embed_symbol
from tasks.strategy_context import DatabaseContext

SAMPLE = Path(__file__).parents[2] / "neuraltrade" / "sample_data" / "NVDA.csv"
BARS = 1_500
STRATEGIES = ["sma_cross", "gated:sma_cross"]


@pytest.fixture
def stored_bars(database_url: str) -> str:
    frame = read_bars(SAMPLE).frame.drop(columns=["line"], errors="ignore").iloc[:BARS]
    with session_scope(database_url, write=True) as session:
        repositories.upsert_bars(session, frame, source="test", now=datetime(2026, 1, 1, tzinfo=UTC))
    # The market states (observations) every signal links to; the gate embeds states itself.
    embed_symbol.fn(database_url, "NVDA", WindowEmbedderConfig(dimension=16))
    return database_url


def _night(url: str) -> tuple[dict[str, dict[str, object]], dict[str, object]]:
    from flows.distill_reflexions import distill_reflexions
    from flows.run_backtests import run_backtests

    backtests = run_backtests.fn(database_url=url, strategies=STRATEGIES, symbols=["NVDA"])
    learning = distill_reflexions.fn(database_url=url)
    return {run["strategy"]: run for run in backtests["runs"]}, learning


def test_the_second_night_gates_with_what_the_first_night_judged(stored_bars: str) -> None:
    url = stored_bars
    first, first_learning = _night(url)

    # Night one: the memory is empty, so the gated run decides exactly as its base.
    assert first["gated:sma_cross"]["trades"] == first["sma_cross"]["trades"] > 10
    assert first_learning["runs_reflected"] == 2 and first_learning["episodes"] > 10
    with session_scope(url) as session:
        base_episodes = load_episodes(session, run_id=uuid.UUID(str(first["sma_cross"]["run_id"])))
        verdicts = {verdict.episode_id: verdict for verdict in load_verdicts(session)}
        [strategy_id] = {episode.strategy_id for episode in base_episodes}
        distillations = load_distillations(session, strategy_id)
    assert base_episodes and all(episode.id in verdicts for episode in base_episodes)
    # Each distillation cites only episodes known before its own as_of.
    known = {episode.id: episode.outcome_known_at for episode in base_episodes}
    assert distillations
    for distillation, _ in distillations:
        assert all(known[cited] < distillation.as_of for cited in distillation.episode_ids if cited in known)

    # The gated strategy reads the base's memory; asked again with nothing new stored, it is not loaded again.
    context = DatabaseContext(url)
    memory = context.learning_memory(strategy_id)
    assert memory.episodes == len({(e.symbol, e.decision_time, e.side) for e in base_episodes if e.decision_bar >= 31})
    assert context.learning_memory(strategy_id) is memory
    assert memory.distillations == len(distillations)

    second, second_learning = _night(url)

    # Night two: the base run is the same run (same inputs), the gated run is new: its memory changed.
    assert second["sma_cross"]["run_id"] == first["sma_cross"]["run_id"]
    assert second["gated:sma_cross"]["run_id"] != first["gated:sma_cross"]["run_id"]
    gated_run = uuid.UUID(str(second["gated:sma_cross"]["run_id"]))
    with session_scope(url) as session:
        signals = load_signals(session, gated_run)
        assert broken_links(session, gated_run) == []
    cited = [
        (signal, link)
        for signal in signals
        for link in signal.causal_links
        if link.cause_kind is CauseKind.EPISODE and link.relation is Relation.RECALLED
    ]
    assert cited, "the second night's gated signals recall no episode"
    first_ids = {episode.id for episode in base_episodes}
    for signal, link in cited:
        # Every episode recalled was judged on the first night, and known before the decision.
        assert link.cause_id in first_ids
        assert known[link.cause_id] < signal.timestamp
    # Signals gated by a pattern name one of a distillation made before them, of episodes known before it.
    made = {pattern.id: distillation for distillation, patterns in distillations for pattern in patterns}
    gated_by = [
        (signal, link)
        for signal in signals
        for link in signal.causal_links
        if link.cause_kind is CauseKind.PATTERN and link.relation is Relation.GATED_BY
    ]
    assert gated_by, "no gated signal names a pattern"
    for signal, link in gated_by:
        assert made[link.cause_id].as_of < signal.timestamp
    assert second_learning["runs_reflected"] == 1  # only the new gated run
    # What the second night stored (the gated run's episodes are of another strategy id) leaves the base's
    # memory as it was; a new episode of the base would be a new memory.
    assert DatabaseContext(url).learning_memory(strategy_id) is memory
    trade = uuid.UUID(int=7)
    later = dataclasses.replace(base_episodes[-1], id=stable_id("episode", trade), trade_id=trade)
    with session_scope(url, write=True) as session:
        save_episodes(session, [later])
    assert DatabaseContext(url).learning_memory(strategy_id) is not memory
    # The base strategy learnt nothing new: none of its checkpoints is distilled again.
    [base_distilled] = [item for item in second_learning["strategies"] if item["strategy_id"] == strategy_id]
    assert base_distilled["new"] == 0 and base_distilled["distillations"] == len(distillations)
