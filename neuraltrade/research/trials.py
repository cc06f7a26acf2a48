"""The trial registry: every variant and parameter combination evaluated, with its out-of-sample daily returns.

A selection bias test (the Deflated Sharpe Ratio, Hansen's SPA) is only as honest as its count of what was
tried: a sweep of 60 combinations, then a walk-forward, then four memory variants are 60 + 1 + 4 trials, not
one. Each evaluated series becomes a `Trial` (a record, stored in the ``trials`` table), identified by what
was tried (family, variant, strategy, parameters, symbols), so that running the same trial again finds the
same id; `TrialRegistry` holds them in order, refuses two different series under one id, and lines them
up day by day for the tests (`neuraltrade.research.evaluation`).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuraltrade.canonical import stable_id, to_plain
from neuraltrade.errors import ValidationError
from neuraltrade.records import Record

__all__ = ["Trial", "TrialRegistry"]


@dataclass(frozen=True, kw_only=True, eq=True)
class Trial(Record):
    """One evaluated series: what was tried and what it earned out of sample, day by day.

    `id` is ``stable_id("trial", family, variant, strategy, parameters, symbols)``: the same trial run again
    has the same id (`Trial.create` derives it). `family` groups the trials one test counts (e.g.
    ``"memory_gate_walk_forward"``), `variant` names the treatment (``"ungated"``, ``"gated"``,
    ``"equity_filter"``, ...), `parameters` the combination (plain JSON values). `timestamps` are the epoch
    microseconds (UTC) of the out-of-sample days, strictly increasing, and `returns` the daily returns
    (fractions) on them.
    """

    KIND = "trial"
    SCHEMA_VERSION = 1

    id: uuid.UUID
    family: str
    variant: str
    strategy: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    symbols: tuple[str, ...]
    timestamps: tuple[int, ...]
    returns: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID):
            raise ValidationError(f"trial id must be a UUID, was {self.id!r}")
        for name in ("family", "variant", "strategy"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValidationError(f"trial {name} must be a non-empty string, was {value!r}")
        if not isinstance(self.parameters, Mapping):
            raise ValidationError(f"trial parameters must be a mapping, was {self.parameters!r}")
        # A plain dict of plain values: what the id hashes is what is stored.
        object.__setattr__(self, "parameters", dict(to_plain(dict(self.parameters))))
        symbols = tuple(self.symbols)
        if not symbols or any(not isinstance(symbol, str) or not symbol for symbol in symbols):
            raise ValidationError(f"trial symbols must be one or more non-empty strings, were {self.symbols!r}")
        object.__setattr__(self, "symbols", symbols)
        stamps = tuple(int(stamp) for stamp in self.timestamps)
        values = tuple(float(value) for value in self.returns)
        if len(stamps) != len(values):
            raise ValidationError(f"trial {self.variant!r} has {len(stamps)} timestamps but {len(values)} returns")
        if any(later <= earlier for earlier, later in itertools.pairwise(stamps)):
            raise ValidationError(f"trial {self.variant!r} timestamps are not strictly increasing")
        bad = [value for value in values if not math.isfinite(value)]
        if bad:
            raise ValidationError(f"trial {self.variant!r} holds a non-finite return {bad[0]!r}")
        object.__setattr__(self, "timestamps", stamps)
        object.__setattr__(self, "returns", values)

    def __hash__(self) -> int:
        return hash(self.id)

    @staticmethod
    def id_for(
        family: str, variant: str, strategy: str, parameters: Mapping[str, Any], symbols: Sequence[str]
    ) -> uuid.UUID:
        """The id of the trial of these keys: ``stable_id("trial", family, variant, strategy, parameters, symbols)``."""
        return stable_id("trial", family, variant, strategy, dict(parameters), list(symbols))

    @classmethod
    def create(
        cls,
        *,
        family: str,
        variant: str,
        strategy: str,
        parameters: Mapping[str, Any],
        symbols: Sequence[str],
        timestamps: Iterable[int],
        returns: Iterable[float],
    ) -> Trial:
        """Build a trial, deriving its id from what was tried (`id_for`)."""
        return cls(
            id=cls.id_for(family, variant, strategy, parameters, symbols),
            family=family,
            variant=variant,
            strategy=strategy,
            parameters=parameters,
            symbols=tuple(symbols),
            timestamps=tuple(timestamps),
            returns=tuple(returns),
        )

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Trial:
        """Build a trial from the plain values of its fields (its canonical form without kind and version)."""
        return cls(
            id=uuid.UUID(plain["id"]),
            family=plain["family"],
            variant=plain["variant"],
            strategy=plain["strategy"],
            parameters=dict(plain["parameters"]),
            symbols=tuple(plain["symbols"]),
            timestamps=tuple(plain["timestamps"]),
            returns=tuple(plain["returns"]),
        )

    @property
    def days(self) -> int:
        """Out-of-sample days."""
        return len(self.returns)

    def sharpe_ratio(self, periods: int = 252) -> float:
        """Annualised Sharpe ratio of the daily returns (0 without variation or with fewer than two days)."""
        values = np.asarray(self.returns)
        if len(values) < 2 or not values.std(ddof=1) > 0:
            return 0.0
        return float(values.mean() / values.std(ddof=1) * math.sqrt(periods))


class TrialRegistry:
    """Trials in the order they were added, one per id; the count a selection-bias test deflates by."""

    def __init__(self, trials: Iterable[Trial] = ()) -> None:
        self._trials: dict[uuid.UUID, Trial] = {}
        for trial in trials:
            self.add(trial)

    def __len__(self) -> int:
        return len(self._trials)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._trials

    def add(self, trial: Trial) -> Trial:
        """Register `trial` (again: nothing changes); refuse another series under an id already registered."""
        if not isinstance(trial, Trial):
            raise ValidationError(f"a trial registry holds trials, was given {type(trial).__name__}")
        known = self._trials.get(trial.id)
        if known is not None and known != trial:
            raise ValidationError(
                f"trial {trial.id} ({trial.family}/{trial.variant}/{trial.strategy} {dict(trial.parameters)}) is "
                "already registered with other returns; a trial evaluated twice must give the same series"
            )
        self._trials.setdefault(trial.id, trial)
        return trial

    def get(self, trial_id: uuid.UUID) -> Trial:
        """The trial of id `trial_id`."""
        try:
            return self._trials[trial_id]
        except KeyError:
            raise ValidationError(f"no trial {trial_id} is registered") from None

    def trials(
        self, *, family: str | None = None, variant: str | None = None, strategy: str | None = None
    ) -> tuple[Trial, ...]:
        """The registered trials in the order added, only those of `family`, `variant` and `strategy` if given."""
        return tuple(
            trial
            for trial in self._trials.values()
            if (family is None or trial.family == family)
            and (variant is None or trial.variant == variant)
            and (strategy is None or trial.strategy == strategy)
        )

    def returns_matrix(self, trials: Sequence[Trial] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The trials' returns day by day: the union of their timestamps, and a (days, trials) matrix.

        A day on which a trial has no return holds NaN in its column. By default every registered trial,
        in the order added.
        """
        chosen = self.trials() if trials is None else tuple(trials)
        if not chosen:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
        stamps = np.unique(np.concatenate([np.asarray(trial.timestamps, dtype=np.int64) for trial in chosen]))
        matrix = np.full((len(stamps), len(chosen)), np.nan)
        for column, trial in enumerate(chosen):
            rows = np.searchsorted(stamps, np.asarray(trial.timestamps, dtype=np.int64))
            matrix[rows, column] = trial.returns
        return stamps, matrix

    def sharpe_ratios(self, trials: Sequence[Trial] | None = None, *, periods: int = 1) -> np.ndarray:
        """Each trial's Sharpe ratio, per period by default (what the Deflated Sharpe Ratio counts)."""
        chosen = self.trials() if trials is None else tuple(trials)
        return np.array([trial.sharpe_ratio(periods) for trial in chosen])

    def to_plain(self) -> list[dict[str, Any]]:
        """Every trial's canonical plain form, in the order added (what the bench dumps to JSON)."""
        return [trial.canonical_plain() for trial in self._trials.values()]


#: The family of the trials the ``walk-forward`` command records.
WALK_FORWARD_FAMILY = "walk_forward"


def walk_forward_trial(
    *,
    strategy: str,
    symbols: Sequence[str],
    timestamps: np.ndarray,
    equity: np.ndarray,
    starting_equity: float,
    parameters: Mapping[str, Any],
) -> Trial:
    """The trial of one walk-forward: its stitched out-of-sample equity as daily returns.

    `timestamps` (epoch microseconds) and `equity` hold the account at the close of each out-of-sample
    bar; a day's return is its last close's equity over the previous day's (the first day's over
    `starting_equity`), so intraday bars count as one day each date. `parameters` holds what the
    walk-forward searched (the grid, its windows, its metric, the costs): two walk-forwards of the same
    search on the same symbols are one trial.
    """
    moments = np.asarray(timestamps, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    if moments.shape != values.shape:
        raise ValidationError(f"walk-forward trial: {len(moments)} timestamps for {len(values)} equity values")
    days = moments // 86_400_000_000
    last = np.flatnonzero(np.append(days[1:] != days[:-1], True)) if len(days) else np.array([], dtype=np.int64)
    closes = values[last]
    previous = np.concatenate([[starting_equity], closes[:-1]])
    returns = np.divide(closes, previous, out=np.zeros_like(closes), where=previous > 0) - np.where(
        previous > 0, 1.0, 0.0
    )
    return Trial.create(
        family=WALK_FORWARD_FAMILY,
        variant="selection",
        strategy=strategy,
        parameters=parameters,
        symbols=symbols,
        timestamps=moments[last].tolist(),
        returns=returns.tolist(),
    )
