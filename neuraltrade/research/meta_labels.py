"""How good is a filter as a meta-labeler? Its confusion matrix over the base's trades, and its Brier score.

A meta-labeler (the memory gate, a baseline filter) keeps or vetoes each entry of a base strategy; the
judge says afterwards whether each of those entries succeeded. `meta_label_confusion` counts winners and
losers kept and vetoed and asks whether the kept entries succeed more often than all of them (precision
against the base rate, with Wilson intervals from statsmodels); `brier_score` scores the filter's
probability of success against the outcomes and against a forecast of the base rate alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from neuraltrade.errors import ConfigError, ValidationError

__all__ = ["brier_score", "meta_label_confusion", "wilson_interval"]


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (statsmodels' ``proportion_confint(method="wilson")``); NaN without
    trials."""
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), was {confidence!r}")
    if trials == 0:
        return (float("nan"), float("nan"))
    low, high = proportion_confint(successes, trials, alpha=1.0 - confidence, method="wilson")
    return (float(low), float(high))


def _flags(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValidationError(f"{name} must be one flag per trade, has shape {array.shape}")
    if array.dtype != bool:
        if not np.all(np.isin(array, (0, 1))):
            raise ValidationError(f"{name} must hold booleans (or 0 and 1), holds {np.unique(array)[:5]!r}")
        array = array.astype(bool)
    return array


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def meta_label_confusion(base_trade_success: Any, vetoed: Any, *, confidence: float = 0.95) -> dict[str, Any]:
    """Confusion matrix of a filter's vetoes against the base trades' success, with precision lift.

    Parameters
    ----------
    base_trade_success
        Per base entry, whether the judge called it a success.
    vetoed
        Per base entry (same order), whether the filter vetoed it.
    confidence
        Of the Wilson intervals.

    Returns
    -------
    dict
        ``winners_kept``, ``losers_kept``, ``winners_vetoed``, ``losers_vetoed`` (the four cells), ``kept``,
        ``vetoed``, ``trades``; ``base_rate`` (successes among all entries) and ``precision`` (among the kept
        ones), each with its Wilson interval (``*_interval``); ``lift`` = precision / base rate (above 1: the
        filter keeps better entries than the base takes); ``veto_precision`` (losers among the vetoed, with
        its interval) and ``winners_vetoed_share`` (the winners given up). Shares of nothing are NaN.
    """
    success = _flags("base_trade_success", base_trade_success)
    veto = _flags("vetoed", vetoed)
    if success.shape != veto.shape:
        raise ValidationError(f"{len(success)} trade outcomes but {len(veto)} veto flags; they must be paired")
    kept = ~veto
    cells = {
        "winners_kept": int(np.sum(success & kept)),
        "losers_kept": int(np.sum(~success & kept)),
        "winners_vetoed": int(np.sum(success & veto)),
        "losers_vetoed": int(np.sum(~success & veto)),
    }
    trades, kept_count, veto_count = len(success), int(kept.sum()), int(veto.sum())
    winners = int(success.sum())
    base_rate = _share(winners, trades)
    precision = _share(cells["winners_kept"], kept_count)
    return {
        **cells,
        "trades": trades,
        "kept": kept_count,
        "vetoed": veto_count,
        "base_rate": base_rate,
        "base_rate_interval": wilson_interval(winners, trades, confidence),
        "precision": precision,
        "precision_interval": wilson_interval(cells["winners_kept"], kept_count, confidence),
        "lift": precision / base_rate if trades and kept_count and base_rate > 0 else float("nan"),
        "veto_precision": _share(cells["losers_vetoed"], veto_count),
        "veto_precision_interval": wilson_interval(cells["losers_vetoed"], veto_count, confidence),
        "winners_vetoed_share": _share(cells["winners_vetoed"], winners),
        "confidence": confidence,
    }


def brier_score(probabilities: Any, outcomes: Any, *, reference: float | None = None) -> dict[str, float]:
    """Brier score of forecast `probabilities` of success against binary `outcomes`, and its skill.

    ``mean((p - y)^2)``; the reference forecast is the constant `reference`, by default the share of
    successes among `outcomes` (the base rate, which flatters the reference a little: it is known only
    afterwards). ``skill = 1 - brier / reference_brier``: above 0, the forecasts beat the base rate.
    """
    forecast = np.asarray(probabilities, dtype=np.float64)
    observed = _flags("outcomes", outcomes).astype(np.float64)
    if forecast.shape != observed.shape:
        raise ValidationError(f"{forecast.size} probabilities but {observed.size} outcomes; they must be paired")
    if forecast.size == 0:
        raise ValidationError("a Brier score needs at least one forecast")
    if not np.all((forecast >= 0.0) & (forecast <= 1.0)):
        raise ValidationError("probabilities must lie in [0, 1] (and not be NaN)")
    base = float(observed.mean()) if reference is None else float(reference)
    if not 0.0 <= base <= 1.0:
        raise ConfigError(f"the reference probability must lie in [0, 1], was {reference!r}")
    score = float(np.mean((forecast - observed) ** 2))
    reference_score = float(np.mean((base - observed) ** 2))
    return {
        "brier": score,
        "reference_probability": base,
        "reference_brier": reference_score,
        "skill": 1.0 - score / reference_score if reference_score > 0 else float("nan"),
        "forecasts": float(forecast.size),
    }
