"""Repositories of the learning loop: episodes, verdicts, critiques, distillations with their patterns,
counterfactuals and trials (tables in `models.learning`).

Every function takes the caller's session. Writes insert each record under its id and leave a record
already stored alone (``ON CONFLICT (id) DO NOTHING``): a record's id is derived from what it says, so
the stored one is the same, and a night re-run after a crash converges on the rows it would have
written. Each save returns how many rows it newly wrote. Reads rebuild every record from its canonical
JSON (`Record.from_canonical`), in a stated order that does not depend on the order of writing.

Write what a record refers to first: a run (`models.backtest_runs`) before its episodes and
counterfactuals, an episode before its verdicts, a verdict before its critiques. A record naming
something not stored fails the save (`IntegrityError`: the foreign keys are enforced).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, distinct, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.base import Base, table_of
from models.bulk import execute_many
from models.dialects import insert_statement
from models.learning import (
    CounterfactualRecord,
    CritiqueRecord,
    DistillationRecord,
    EpisodeRecord,
    PatternRecord,
    TrialRecord,
    VerdictRecord,
)
from models.provenance import log_records
from models.trading import BacktestRunRecord, BacktestTradeRecord
from neuraltrade.errors import ValidationError
from neuraltrade.learning.counterfactual import Counterfactual
from neuraltrade.learning.episodes import Episode
from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.learning.reflexion import Critique
from neuraltrade.records import Record
from neuraltrade.research.trials import Trial
from neuraltrade.timestamps import require_aware, to_microseconds

RecordT = TypeVar("RecordT", bound=Record)

#: Keys per IN (...) list: SQLite binds at most 32,766 variables.
_KEYS_PER_STATEMENT = 10_000

DistillationWithPatterns = tuple[Distillation, tuple[Pattern, ...]]


# -- the generic part -----------------------------------------------------------------------------------


def _fields(*names: str) -> dict[str, Callable[[Any], Any]]:
    """Columns that copy the record's fields of the same names."""
    return {name: attrgetter(name) for name in names}


def _insert_new(
    session: Session,
    model: type[Base],
    kind: type[RecordT],
    records: Iterable[RecordT],
    columns: Mapping[str, Callable[[RecordT], Any]],
) -> int:
    """Insert `records` (each a `kind`) into `model`'s table, one row per record with the `columns` read
    from it and its canonical JSON; leave a record already stored under its id alone. Return how many
    rows were new."""
    given = list(records)
    for record in given:
        if not isinstance(record, kind):
            raise ValidationError(f"{model.__tablename__} stores {kind.__name__} records, was given {record!r}")
    if not given:
        return 0
    table = table_of(model)
    values: dict[str, list[Any]] = {name: [read(record) for record in given] for name, read in columns.items()}
    values["record"] = [record.to_json() for record in given]
    statement = insert_statement(session, table).on_conflict_do_nothing(index_elements=["id"])
    new = execute_many(session, statement, table, values)
    log_records(session, given, canonical=[text.encode("utf-8") for text in values["record"]])
    return new


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), _KEYS_PER_STATEMENT):
        yield ordered[start : start + _KEYS_PER_STATEMENT]


def _read(
    session: Session,
    kind: type[RecordT],
    query: Select[Any],
    *,
    column: Any = None,
    keys: Iterable[Any] | None = None,
    order: Callable[[RecordT], Any] | None = None,
) -> list[RecordT]:
    """The records `query` (selecting a record column first) finds, rebuilt as `kind`.

    With `keys`, the query runs once per bounded list of keys (``column IN (...)``) and the records come
    back sorted by `order`; without, in the query's own order.
    """
    if keys is None:
        return [kind.from_canonical(text) for text in session.scalars(query)]
    found: list[RecordT] = []
    for chunk in _chunks(keys):
        found.extend(kind.from_canonical(text) for text in session.scalars(query.where(column.in_(chunk))))
    return found if order is None else sorted(found, key=order)


def _moment(name: str, moment: datetime | None) -> datetime | None:
    return None if moment is None else require_aware(name, moment)


# -- episodes -------------------------------------------------------------------------------------------

_EPISODE_COLUMNS: dict[str, Callable[[Episode], Any]] = _fields(
    "id",
    "trade_id",
    "run_id",
    "strategy",
    "strategy_id",
    "symbol",
    "side",
    "decision_time",
    "outcome_known_at",
    "net_return",
)


def save_episodes(session: Session, episodes: Iterable[Episode]) -> int:
    """Store `episodes` (after their runs); return how many were new."""
    return _insert_new(session, EpisodeRecord, Episode, episodes, _EPISODE_COLUMNS)


def load_episodes(
    session: Session,
    *,
    strategy: str | None = None,
    strategy_id: str | None = None,
    run_id: uuid.UUID | None = None,
    known_before: datetime | None = None,
) -> list[Episode]:
    """Return the stored episodes (of the strategy named `strategy`, of the strategy version `strategy_id`,
    of run `run_id`, whose outcome was known strictly before `known_before`: each filter only if given),
    ordered by `outcome_known_at`, then id."""
    query = select(EpisodeRecord.record)
    if strategy is not None:
        query = query.where(EpisodeRecord.strategy == strategy)
    if strategy_id is not None:
        query = query.where(EpisodeRecord.strategy_id == strategy_id)
    if run_id is not None:
        query = query.where(EpisodeRecord.run_id == run_id)
    known_before = _moment("known_before", known_before)
    if known_before is not None:
        query = query.where(EpisodeRecord.outcome_known_at < known_before)
    query = query.order_by(EpisodeRecord.outcome_known_at, EpisodeRecord.id)
    return _read(session, Episode, query)


def episode_ids_of_run(session: Session, run_id: uuid.UUID) -> set[uuid.UUID]:
    """Return the ids of the episodes stored for run `run_id` (empty if none)."""
    return set(session.scalars(select(EpisodeRecord.id).where(EpisodeRecord.run_id == run_id)))


def strategies_with_episodes(session: Session) -> list[str]:
    """Return the strategy ids (`Episode.strategy_id`, a strategy's name and configuration) of the stored
    episodes, sorted."""
    query = select(EpisodeRecord.strategy_id).distinct().order_by(EpisodeRecord.strategy_id)
    return list(session.scalars(query))


def runs_without_episodes(session: Session) -> list[uuid.UUID]:
    """Return the ids of the stored runs that have closed trades and no stored episode, oldest run first.

    A run whose trades were all still inside their outcome windows when it was reflected on has no
    episode yet, so it is listed again (reflecting on it again writes only what has become known); a run
    with at least one episode is not, whatever its other trades.
    """
    return _runs_without(session, EpisodeRecord.run_id)


def runs_without_counterfactuals(session: Session) -> list[uuid.UUID]:
    """Return the ids of the stored runs that have closed trades and no stored counterfactual, oldest first."""
    return _runs_without(session, CounterfactualRecord.run_id)


def _runs_without(session: Session, run_column: InstrumentedAttribute[uuid.UUID | None]) -> list[uuid.UUID]:
    """The runs with a closed trade and no row whose `run_column` names them, oldest first."""
    traded = exists().where(BacktestTradeRecord.run_id == BacktestRunRecord.id)
    learnt = exists().where(run_column == BacktestRunRecord.id)
    query = (
        select(BacktestRunRecord.id).where(traded, ~learnt).order_by(BacktestRunRecord.created_at, BacktestRunRecord.id)
    )
    return list(session.scalars(query))


# -- verdicts and critiques ---------------------------------------------------------------------------

_VERDICT_COLUMNS: dict[str, Callable[[Verdict], Any]] = _fields(
    "id", "episode_id", "judge_digest", "success", "score", "known_at"
)
_CRITIQUE_COLUMNS: dict[str, Callable[[Critique], Any]] = {
    **_fields("id", "episode_id", "verdict_id", "config_digest", "known_at"),
    "lessons": lambda critique: list(critique.lessons),
}


def _by_time(record: Verdict | Critique) -> tuple[datetime, uuid.UUID]:
    return record.known_at, record.id


def save_verdicts(session: Session, verdicts: Iterable[Verdict]) -> int:
    """Store `verdicts` (after their episodes); return how many were new."""
    return _insert_new(session, VerdictRecord, Verdict, verdicts, _VERDICT_COLUMNS)


def load_verdicts(
    session: Session, *, episode_ids: Iterable[uuid.UUID] | None = None, judge_digest: str | None = None
) -> list[Verdict]:
    """Return the stored verdicts (on `episode_ids`, by the judge of `judge_digest`: each filter only if
    given), ordered by `known_at`, then id."""
    query = select(VerdictRecord.record)
    if judge_digest is not None:
        query = query.where(VerdictRecord.judge_digest == judge_digest)
    if episode_ids is None:
        return _read(session, Verdict, query.order_by(VerdictRecord.known_at, VerdictRecord.id))
    return _read(session, Verdict, query, column=VerdictRecord.episode_id, keys=episode_ids, order=_by_time)


def save_critiques(session: Session, critiques: Iterable[Critique]) -> int:
    """Store `critiques` (after their episodes and verdicts); return how many were new."""
    return _insert_new(session, CritiqueRecord, Critique, critiques, _CRITIQUE_COLUMNS)


def load_critiques(
    session: Session, *, run_id: uuid.UUID | None = None, episode_ids: Iterable[uuid.UUID] | None = None
) -> list[Critique]:
    """Return the stored critiques (of the episodes of run `run_id`, of `episode_ids`: each filter only if
    given), ordered by `known_at`, then id."""
    query = select(CritiqueRecord.record)
    if run_id is not None:
        query = query.join(EpisodeRecord, EpisodeRecord.id == CritiqueRecord.episode_id).where(
            EpisodeRecord.run_id == run_id
        )
    if episode_ids is None:
        return _read(session, Critique, query.order_by(CritiqueRecord.known_at, CritiqueRecord.id))
    return _read(session, Critique, query, column=CritiqueRecord.episode_id, keys=episode_ids, order=_by_time)


# -- distillations and their patterns -------------------------------------------------------------------

_DISTILLATION_COLUMNS: dict[str, Callable[[Distillation], Any]] = _fields("id", "strategy", "as_of", "config_digest")
_PATTERN_COLUMNS: dict[str, Callable[[Pattern], Any]] = _fields(
    "id", "distillation_id", "strategy", "side", "rank", "interval_low"
)


def save_distillation(session: Session, distillation: Distillation, patterns: Sequence[Pattern]) -> bool:
    """Store `distillation` and its `patterns` together (one savepoint: both or neither); return whether
    the distillation was new.

    Raises
    ------
    ValidationError
        If `patterns` are not exactly the patterns the distillation names (`pattern_ids`), or one of them
        belongs to another distillation or strategy.
    """
    given = tuple(patterns)
    for pattern in given:
        if pattern.distillation_id != distillation.id or pattern.strategy != distillation.strategy:
            raise ValidationError(
                f"pattern {pattern.id} belongs to distillation {pattern.distillation_id} of {pattern.strategy!r}, "
                f"not to distillation {distillation.id} of {distillation.strategy!r}"
            )
    named, found = set(distillation.pattern_ids), {pattern.id for pattern in given}
    if named != found or len(given) != len(found):
        raise ValidationError(
            f"distillation {distillation.id} names patterns {sorted(map(str, named))}, "
            f"was given {sorted(str(pattern.id) for pattern in given)}"
        )
    with session.begin_nested():
        new = _insert_new(session, DistillationRecord, Distillation, [distillation], _DISTILLATION_COLUMNS)
        _insert_new(session, PatternRecord, Pattern, given, _PATTERN_COLUMNS)
    return new > 0


def _with_patterns(session: Session, distillations: Sequence[Distillation]) -> list[DistillationWithPatterns]:
    """Each of `distillations` with its stored patterns, best rank first (then by id)."""
    query = select(PatternRecord.record)
    patterns = _read(
        session,
        Pattern,
        query,
        column=PatternRecord.distillation_id,
        keys=[distillation.id for distillation in distillations],
        order=lambda pattern: (pattern.rank, pattern.id),
    )
    by_distillation: dict[uuid.UUID, list[Pattern]] = {distillation.id: [] for distillation in distillations}
    for pattern in patterns:
        by_distillation[pattern.distillation_id].append(pattern)
    return [(distillation, tuple(by_distillation[distillation.id])) for distillation in distillations]


def learning_state(session: Session, strategy_id: str) -> tuple[int, int, int, int]:
    """A cheap fingerprint of what is stored of strategy id `strategy_id`'s learning: its episodes (count,
    latest outcome_known_at in µs) and distillations (count, latest as_of in µs). Records are only ever
    added, so equal fingerprints mean equal contents."""
    episodes = session.execute(
        select(func.count(), func.max(EpisodeRecord.outcome_known_at)).where(EpisodeRecord.strategy_id == strategy_id)
    ).one()
    distillations = session.execute(
        select(func.count(), func.max(DistillationRecord.as_of)).where(DistillationRecord.strategy == strategy_id)
    ).one()
    latest = [_microseconds_or_zero(moment) for moment in (episodes[1], distillations[1])]
    return int(episodes[0]), latest[0], int(distillations[0]), latest[1]


def _microseconds_or_zero(moment: datetime | int | None) -> int:
    if moment is None:
        return 0
    return moment if isinstance(moment, int) else to_microseconds(moment)


def stored_distillation_ids(session: Session, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The ones of `ids` that name a stored distillation."""
    present: set[uuid.UUID] = set()
    for chunk in _chunks(sorted(set(ids), key=str)):
        present.update(session.scalars(select(DistillationRecord.id).where(DistillationRecord.id.in_(chunk))))
    return present


def pattern_count(session: Session, distillation_id: uuid.UUID) -> int:
    """How many patterns the stored distillation `distillation_id` kept."""
    statement = select(func.count()).select_from(PatternRecord).where(PatternRecord.distillation_id == distillation_id)
    return int(session.scalar(statement) or 0)


def load_distillations(
    session: Session, strategy: str, *, before: datetime | None = None, config_digest: str | None = None
) -> list[DistillationWithPatterns]:
    """Return the stored distillations of `strategy` (with `as_of` strictly before `before`, of the
    configuration `config_digest`: each filter only if given), each with its patterns, ordered by
    `as_of`, then id."""
    query = select(DistillationRecord.record).where(DistillationRecord.strategy == strategy)
    before = _moment("before", before)
    if before is not None:
        query = query.where(DistillationRecord.as_of < before)
    if config_digest is not None:
        query = query.where(DistillationRecord.config_digest == config_digest)
    query = query.order_by(DistillationRecord.as_of, DistillationRecord.id)
    return _with_patterns(session, _read(session, Distillation, query))


def latest_patterns(
    session: Session, strategy: str | None = None, *, config_digest: str | None = None
) -> list[DistillationWithPatterns]:
    """Return the newest stored distillation (latest `as_of`) of each strategy, or of `strategy` only,
    with its patterns, ordered by strategy. Of several at that `as_of` (a later night that knew of more
    episodes known before it, or another configuration unless `config_digest` names one), the one citing
    the most episodes, then the greatest id, as the gate reads them
    (`neuraltrade.learning.patterns.one_per_checkpoint`)."""
    conditions: list[ColumnElement[bool]] = []
    if strategy is not None:
        conditions.append(DistillationRecord.strategy == strategy)
    if config_digest is not None:
        conditions.append(DistillationRecord.config_digest == config_digest)
    newest = (
        select(DistillationRecord.strategy, func.max(DistillationRecord.as_of).label("as_of"))
        .where(*conditions)
        .group_by(DistillationRecord.strategy)
        .subquery()
    )
    query = (
        select(DistillationRecord.record)
        .join(
            newest,
            (DistillationRecord.strategy == newest.c.strategy) & (DistillationRecord.as_of == newest.c.as_of),
        )
        .where(*conditions)
        .order_by(DistillationRecord.strategy, DistillationRecord.id)
    )
    chosen: dict[str, Distillation] = {}
    for distillation in _read(session, Distillation, query):
        held = chosen.get(distillation.strategy)
        if held is None or (len(distillation.episode_ids), distillation.id.int) > (
            len(held.episode_ids),
            held.id.int,
        ):
            chosen[distillation.strategy] = distillation
    return _with_patterns(session, [chosen[name] for name in sorted(chosen)])


# -- counterfactuals and trials ---------------------------------------------------------------------------

_COUNTERFACTUAL_COLUMNS: dict[str, Callable[[Counterfactual], Any]] = _fields(
    "id", "run_id", "trade_id", "alternative", "regret"
)
_TRIAL_COLUMNS: dict[str, Callable[[Trial], Any]] = _fields("id", "family", "variant", "strategy")


def save_counterfactuals(session: Session, counterfactuals: Iterable[Counterfactual]) -> int:
    """Store `counterfactuals` (after their runs); return how many were new."""
    return _insert_new(session, CounterfactualRecord, Counterfactual, counterfactuals, _COUNTERFACTUAL_COLUMNS)


def load_counterfactuals(session: Session, run_id: uuid.UUID) -> list[Counterfactual]:
    """Return the stored counterfactuals of run `run_id`, ordered by trade, alternative, then id."""
    query = (
        select(CounterfactualRecord.record)
        .where(CounterfactualRecord.run_id == run_id)
        .order_by(CounterfactualRecord.trade_id, CounterfactualRecord.alternative, CounterfactualRecord.id)
    )
    return _read(session, Counterfactual, query)


def save_trials(session: Session, trials: Iterable[Trial]) -> int:
    """Store `trials`; return how many were new."""
    return _insert_new(session, TrialRecord, Trial, trials, _TRIAL_COLUMNS)


def load_trials(session: Session, *, family: str | None = None) -> list[Trial]:
    """Return the stored trials (of `family` if given), ordered by family, variant, strategy, then id."""
    query = select(TrialRecord.record)
    if family is not None:
        query = query.where(TrialRecord.family == family)
    query = query.order_by(TrialRecord.family, TrialRecord.variant, TrialRecord.strategy, TrialRecord.id)
    return _read(session, Trial, query)


# -- counts -----------------------------------------------------------------------------------------------


def learning_counts(session: Session) -> dict[str, int]:
    """Return how many of each learning record are stored, and what verdict coverage is computed from.

    Keys: ``episodes``, ``verdicts``, ``critiques``, ``distillations``, ``patterns``, ``counterfactuals``,
    ``trials``; ``judged_episodes`` (episodes with at least one verdict); ``closed_trades`` (the closed
    trades of every stored run) and ``judged_trades`` (those of them whose episode, matched by its
    `trade_id`, has a verdict). Verdict coverage = judged_trades / closed_trades.
    """
    counts = {
        name: session.scalar(select(func.count()).select_from(model)) or 0
        for name, model in (
            ("episodes", EpisodeRecord),
            ("verdicts", VerdictRecord),
            ("critiques", CritiqueRecord),
            ("distillations", DistillationRecord),
            ("patterns", PatternRecord),
            ("counterfactuals", CounterfactualRecord),
            ("trials", TrialRecord),
            ("closed_trades", BacktestTradeRecord),
        )
    }
    counts["judged_episodes"] = session.scalar(select(func.count(distinct(VerdictRecord.episode_id)))) or 0
    judged_trades = (
        select(func.count(distinct(BacktestTradeRecord.id)))
        .join(EpisodeRecord, EpisodeRecord.trade_id == BacktestTradeRecord.id)
        .join(VerdictRecord, VerdictRecord.episode_id == EpisodeRecord.id)
    )
    counts["judged_trades"] = session.scalar(judged_trades) or 0
    return counts
