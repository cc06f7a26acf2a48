"""Specification of the pure checks of `verify`: patterns recounted from verdicts, retrievals point in time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from neuraltrade.canonical import stable_id
from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.provenance.audit import pattern_findings, retrieval_findings, win_counts
from neuraltrade.provenance.records import Retrieval, RetrievedItem
from neuraltrade.records import CauseKind
from neuraltrade.timestamps import to_microseconds

MOMENT = datetime(2026, 6, 1, tzinfo=UTC)
EPISODES = sorted((uuid.UUID(int=number) for number in range(1, 5)), key=str)


def _verdict(episode: uuid.UUID, success: bool, judge: str = "a" * 64) -> Verdict:
    return Verdict(
        id=stable_id("verdict", episode, judge),
        episode_id=episode,
        judge_digest=judge,
        success=success,
        score=0.01,
        barrier="take_profit" if success else "stop_loss",
        barrier_bar=3,
        barrier_return=0.02 if success else -0.02,
        benchmark_return=0.0,
        volatility=0.02,
        known_at=MOMENT,
    )


def _pattern(wins: int, members: tuple[uuid.UUID, ...] = tuple(EPISODES)) -> tuple[Pattern, Distillation]:
    distillation_id = uuid.uuid4()
    pattern = Pattern(
        id=uuid.uuid4(),
        distillation_id=distillation_id,
        strategy="s",
        side=1,
        centroid=(0.0,),
        radius=1.0,
        members=members,
        wins=wins,
        trials=len(members),
        decayed_wins=float(wins),
        decayed_trials=float(len(members)),
        alpha=1.0 + wins,
        beta=1.0 + len(members) - wins,
        interval_low=0.1,
        interval_high=0.9,
        base_rate=0.5,
        p_value=0.5,
        q_value=0.5,
        better_than_base=False,
        worse_than_base=False,
    )
    distillation = Distillation(
        id=distillation_id,
        strategy="s",
        as_of=MOMENT,
        config_digest="0" * 64,
        episode_ids=tuple(EPISODES),
        feature_means=(0.0,),
        feature_scales=(1.0,),
        base_rate=0.5,
        pattern_ids=(pattern.id,),
    )
    return pattern, distillation


VERDICTS = {episode: [_verdict(episode, number < 3)] for number, episode in enumerate(EPISODES)}
KNOWN = dict.fromkeys(EPISODES, MOMENT)


def test_a_pattern_whose_counts_recompute_from_its_verdicts_passes_and_one_that_does_not_is_named() -> None:
    right, distillation = _pattern(3)
    wrong, other = _pattern(2)

    findings = pattern_findings([right, wrong], {d.id: d for d in (distillation, other)}, VERDICTS, KNOWN)

    assert win_counts(EPISODES, VERDICTS) == {"a" * 64: 3}
    assert [(finding.record_id, finding.check) for finding in findings] == [(str(wrong.id), "counts")]
    assert "says 2 wins of 4" in findings[0].detail and "give 3 under judge aaaaaaaaaaaa" in findings[0].detail


def test_a_judge_that_did_not_judge_every_member_does_not_count() -> None:
    partial = {**VERDICTS, EPISODES[0]: [*VERDICTS[EPISODES[0]], _verdict(EPISODES[0], False, "b" * 64)]}

    assert win_counts(EPISODES, partial) == {"a" * 64: 3}


def test_a_retrieval_is_named_when_an_item_was_known_after_the_decision_or_misstated() -> None:
    pattern, distillation = _pattern(3)
    observation = uuid.UUID(int=99)
    observations = {
        observation: ("NVDA", to_microseconds(MOMENT)),
        **{uuid.UUID(int=100 + day): ("NVDA", to_microseconds(MOMENT + timedelta(days=day))) for day in range(1, 6)},
    }

    def retrieval(decision: datetime, kind: CauseKind, item: uuid.UUID, known: datetime, horizon: int = 0) -> Retrieval:
        found = (RetrievedItem(cause_kind=kind, cause_id=item, known_at=known),)
        return Retrieval.of(strategy_id="s", symbol="NVDA", decision_time=decision, horizon_bars=horizon, items=found)

    fine = [
        retrieval(MOMENT, CauseKind.EPISODE, EPISODES[0], MOMENT),
        retrieval(MOMENT + timedelta(days=1), CauseKind.PATTERN, pattern.id, MOMENT),
        retrieval(MOMENT + timedelta(days=5), CauseKind.MEMORY_ITEM, observation, MOMENT + timedelta(days=5), 5),
    ]
    late = retrieval(MOMENT - timedelta(days=1), CauseKind.EPISODE, EPISODES[0], MOMENT - timedelta(days=2))
    unplaced = retrieval(MOMENT + timedelta(days=9), CauseKind.MEMORY_ITEM, observation, MOMENT, 6)
    misstated = retrieval(MOMENT + timedelta(days=9), CauseKind.MEMORY_ITEM, observation, MOMENT, 5)

    findings = retrieval_findings(
        [*fine, late, unplaced, misstated], KNOWN, [pattern], {distillation.id: distillation}, observations
    )

    assert [finding.record_id for finding in findings] == [str(late.id), str(unplaced.id), str(misstated.id)]
    assert "after the decision" in findings[0].detail and "known never" in findings[1].detail
    assert "its record says 2026-06-06" in findings[2].detail
