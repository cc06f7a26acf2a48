"""Does a variant beat its benchmark out of sample? Sharpe ratios, their paired difference, SPA and the DSR.

Every function takes daily returns (fractions, one per out-of-sample day) and is pure. The resampling is
the `arch` package's (stationary bootstrap, Hansen's SPA); the only formulas written here are closed forms
from the literature, each named where it is used: the delta-method standard error of a Sharpe difference
(Jobson & Korkie 1981 with Memmel's 2003 correction), the Deflated Sharpe Ratio (Bailey & López de Prado
2014) and the minimum detectable difference of a one-sided test. The meta-labelling measures (confusion
matrix, Brier score) live in `neuraltrade.research.meta_labels`.

Sharpe ratios are ``mean / standard deviation (ddof 1)`` of the daily returns, annualised by ``sqrt(periods)``
where a name or a key says "annualised"; a series without variation (a strategy that never traded) has a
Sharpe ratio of 0, not NaN, so that "vetoed everything" compares as "earned nothing".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from arch.bootstrap import SPA, StationaryBootstrap, optimal_block_length
from scipy.stats import kurtosis, norm, skew

from neuraltrade.errors import ConfigError, ValidationError

#: Trading days a year: the annualisation of daily Sharpe ratios.
PERIODS_PER_YEAR = 252
#: The Euler-Mascheroni constant of the expected maximum of N normal draws (Bailey & López de Prado 2014).
EULER_GAMMA = 0.5772156649015329
#: Floor of a resample's standard error: a resample whose two series coincide has a standard error of 0, and
#: its t-statistic (0 / 0) must not be NaN.
_STANDARD_ERROR_FLOOR = 1e-12

__all__ = [
    "EULER_GAMMA",
    "PERIODS_PER_YEAR",
    "deflated_sharpe_ratio",
    "expected_maximum_sharpe",
    "minimum_detectable_sharpe_difference",
    "performance_summary",
    "sharpe_difference_lower_bound",
    "sharpe_ratio",
    "spa_test",
]


def _returns(name: str, values: Any, *, minimum: int = 2) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationError(f"{name} must be one series of returns, has shape {array.shape}")
    if len(array) < minimum:
        raise ValidationError(f"{name} needs at least {minimum} returns, has {len(array)}")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValidationError(f"{name} holds a non-finite return at position {bad}: {array[bad]!r}")
    return array


def _probability(name: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must lie in (0, 1), was {value!r}")
    return float(value)


def _per_period_sharpe(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio of each column of `returns` (0 where a column does not vary)."""
    deviation = returns.std(axis=0, ddof=1)
    safe = np.where(deviation > 0, deviation, 1.0)
    return np.where(deviation > 0, returns.mean(axis=0) / safe, 0.0)


def sharpe_ratio(returns: Any, periods: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio of daily `returns`: ``mean / std (ddof 1) * sqrt(periods)``; 0 without variation."""
    array = _returns("returns", returns)
    return float(_per_period_sharpe(array[:, None])[0] * math.sqrt(periods))


def performance_summary(returns: Any, periods: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """Annualised Sharpe ratio, total compounded return and maximum drawdown (fractions) of daily `returns`."""
    array = _returns("returns", returns)
    wealth = np.cumprod(1.0 + array)
    peak = np.maximum.accumulate(np.concatenate(([1.0], wealth)))[1:]
    return {
        "sharpe": sharpe_ratio(array, periods),
        "total_return": float(wealth[-1] - 1.0),
        "max_drawdown": float(np.max(1.0 - wealth / peak)),
        "days": float(len(array)),
    }


def _difference(pair: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio of column 0 minus that of column 1."""
    sharpes = _per_period_sharpe(pair)
    return np.array([sharpes[0] - sharpes[1]])


def _difference_standard_error(_: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Delta-method standard error of `_difference` for paired i.i.d. returns (Jobson-Korkie, Memmel 2003).

    ``Var(SR1 - SR2) = [2 - 2 rho + (SR1^2 + SR2^2 - 2 SR1 SR2 rho^2) / 2] / T`` when both series vary; a
    series without variation has a Sharpe ratio fixed at 0 and contributes no variance.
    """
    count = len(pair)
    deviation = pair.std(axis=0, ddof=1)
    first, second = _per_period_sharpe(pair)
    varies = deviation > 0
    variance = 0.0
    if varies[0]:
        variance += 1.0 + first * first / 2.0
    if varies[1]:
        variance += 1.0 + second * second / 2.0
    if varies.all():
        centred = pair - pair.mean(axis=0)
        rho = float((centred[:, 0] @ centred[:, 1]) / (count - 1) / (deviation[0] * deviation[1]))
        variance -= 2.0 * (rho + first * second * rho * rho / 2.0)
    return np.array([math.sqrt(max(variance, 0.0) / count) + _STANDARD_ERROR_FLOOR])


def stationary_block_length(*series: np.ndarray) -> int:
    """The largest Politis-White optimal expected block length ("stationary") over `series`, rounded up, at
    least 1 (arch's bootstraps take a whole number)."""
    lengths = optimal_block_length(np.column_stack(series))["stationary"].to_numpy()
    finite = lengths[np.isfinite(lengths)]
    return max(1, math.ceil(finite.max())) if finite.size else 1


def sharpe_difference_lower_bound(
    treated: Any,
    base: Any,
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 20261202,
    periods: int = PERIODS_PER_YEAR,
) -> dict[str, Any]:
    """One-sided lower confidence bound of ``Sharpe(treated) - Sharpe(base)`` (annualised), paired by day.

    A studentized stationary bootstrap (`arch.bootstrap.StationaryBootstrap`, ``conf_int(method="studentized",
    tail="lower")``): both series are resampled on the same days, in blocks of geometric length whose mean
    is the largest `optimal_block_length` of the two series and of their difference, rounded up
    (`stationary_block_length`).
    Each resample's difference is studentized with the delta-method standard error recomputed on that
    resample (`_difference_standard_error`, passed as arch's ``std_err_func``); a nested bootstrap, arch's
    default, costs a hundred times more for the same pivot.

    Returns
    -------
    dict
        ``estimate`` and ``lower_bound`` (annualised), ``standard_error`` (delta method, annualised, full
        sample), ``bootstrap_standard_error`` (standard deviation of the resampled differences, annualised),
        ``block_length``, ``reps``, ``confidence``, ``seed``, ``days``, ``correlation`` and both Sharpe ratios.
        Identical series give estimate and bound 0 without resampling.
    """
    first = _returns("treated", treated, minimum=10)
    second = _returns("base", base, minimum=10)
    if len(first) != len(second):
        raise ValidationError(f"treated has {len(first)} returns and base {len(second)}; they must be paired by day")
    _probability("confidence", confidence)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 100:
        raise ConfigError(f"bootstrap reps must be an integer >= 100, was {reps!r}")
    pair = np.column_stack([first, second])
    scale = math.sqrt(periods)
    estimate = float(_difference(pair)[0])
    error = float(_difference_standard_error(np.zeros(1), pair)[0])
    result: dict[str, Any] = {
        "estimate": estimate * scale,
        "treated_sharpe": sharpe_ratio(first, periods),
        "base_sharpe": sharpe_ratio(second, periods),
        "standard_error": error * scale,
        "confidence": confidence,
        "reps": reps,
        "seed": seed,
        "days": len(first),
        "correlation": _correlation(first, second),
    }
    if np.array_equal(first, second):
        return result | {"lower_bound": 0.0, "bootstrap_standard_error": 0.0, "block_length": 1}
    block = stationary_block_length(first, second, first - second)
    bootstrap = StationaryBootstrap(block, pair, seed=seed)
    interval = bootstrap.conf_int(
        _difference,
        reps=reps,
        method="studentized",
        size=confidence,
        tail="lower",
        std_err_func=_difference_standard_error,
    )
    spread = StationaryBootstrap(block, pair, seed=seed + 1).apply(_difference, reps=reps)
    return result | {
        "lower_bound": float(interval[0, 0]) * scale,
        "bootstrap_standard_error": float(np.std(spread[:, 0], ddof=1)) * scale,
        "block_length": block,
    }


def _correlation(first: np.ndarray, second: np.ndarray) -> float:
    if first.std() == 0 or second.std() == 0:
        return 0.0
    return float(np.corrcoef(first, second)[0, 1])


def spa_test(
    benchmark_returns: Any,
    variant_returns_matrix: Any,
    *,
    reps: int = 1000,
    seed: int = 20261202,
    block_length: int | None = None,
) -> dict[str, Any]:
    """Hansen's test of superior predictive ability: does any variant beat the benchmark?

    `arch.bootstrap.SPA` on losses ``-returns`` (stationary bootstrap, studentized), the null being that no
    variant (column of `variant_returns_matrix`, days in rows) has a higher mean return than the benchmark.
    The block length defaults to the largest optimal stationary length over the loss differentials
    (benchmark minus each variant), at least 1.

    Returns
    -------
    dict
        ``lower``, ``consistent`` and ``upper`` p-values (Hansen recommends ``consistent``), ``better``: the
        indices of the variants found better at 5 %, ``best``: the variant of the highest mean return,
        ``left_out``: variants equal to the benchmark up to a constant loss (never better; not bootstrapped),
        ``block_length``, ``reps``, ``seed``, ``variants``, ``days``.
    """
    benchmark = _returns("benchmark_returns", benchmark_returns, minimum=10)
    variants = np.asarray(variant_returns_matrix, dtype=np.float64)
    if variants.ndim == 1:
        variants = variants[:, None]
    if variants.ndim != 2 or variants.shape[0] != len(benchmark) or variants.shape[1] < 1:
        raise ValidationError(
            f"variant returns must be a (days, variants) matrix of {len(benchmark)} days, has shape {variants.shape}"
        )
    if not np.all(np.isfinite(variants)):
        raise ValidationError("variant returns hold a non-finite value")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 100:
        raise ConfigError(f"SPA reps must be an integer >= 100, was {reps!r}")
    differentials = variants - benchmark[:, None]
    # A variant that never differs from the benchmark, or only by a constant loss, cannot be the better one,
    # and its differential of variance 0 would studentize to 0 / 0: it is left out of the bootstrap.
    tested = [
        column
        for column in range(variants.shape[1])
        if differentials[:, column].std() > 0 or differentials[:, column].mean() > 0
    ]
    if block_length is None:
        varying = [differentials[:, column] for column in tested if differentials[:, column].std() > 0]
        block_length = stationary_block_length(*varying) if varying else 1
    pvalues = {"lower": 1.0, "consistent": 1.0, "upper": 1.0}
    better: list[int] = []
    if tested:
        test = SPA(-benchmark, -variants[:, tested], block_size=max(1, int(block_length)), reps=reps, seed=seed)
        test.compute()
        pvalues = {name: float(test.pvalues[name]) for name in pvalues}
        better = [tested[int(index)] for index in np.asarray(test.better_models(0.05, "consistent")).ravel()]
    return {
        **pvalues,
        "better": better,
        "left_out": variants.shape[1] - len(tested),
        "best": int(np.argmax(variants.mean(axis=0))),
        "block_length": int(block_length),
        "reps": reps,
        "seed": seed,
        "variants": int(variants.shape[1]),
        "days": len(benchmark),
    }


def expected_maximum_sharpe(trials: int, variance: float) -> float:
    """Expected maximum of `trials` per-period Sharpe ratios of variance `variance` when every true one is 0.

    ``sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`` (Bailey & López de Prado 2014,
    eq. 2, from the extreme value theory of the maximum of N normals); 0 for a single trial.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"the number of trials must be an integer >= 1, was {trials!r}")
    if not variance >= 0:
        raise ConfigError(f"the variance of the trials' Sharpe ratios must be >= 0, was {variance!r}")
    if trials == 1:
        return 0.0
    quantiles = (1.0 - EULER_GAMMA) * norm.ppf(1.0 - 1.0 / trials) + EULER_GAMMA * norm.ppf(
        1.0 - 1.0 / (trials * math.e)
    )
    return float(math.sqrt(variance) * quantiles)


def deflated_sharpe_ratio(returns: Any, trial_sharpes: Any, *, periods: int = PERIODS_PER_YEAR) -> dict[str, Any]:
    """Deflated Sharpe Ratio of the selected series `returns` among `trial_sharpes` (Bailey & López de Prado 2014).

    The probability that the true Sharpe ratio of `returns` exceeds the expected maximum Sharpe ratio of
    ``N = len(trial_sharpes)`` trials with no skill (`expected_maximum_sharpe`, V their sample variance):
    ``Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``, SR per period, g3 the skewness
    and g4 the (non-excess) kurtosis of `returns`. `trial_sharpes` are **per-period** (daily, not annualised)
    Sharpe ratios of every trial, the selected one included.

    Returns
    -------
    dict
        ``dsr``, ``sharpe`` and ``expected_maximum_sharpe`` (annualised), their per-period values,
        ``trials``, ``trial_variance`` (per period), ``skewness``, ``kurtosis``, ``days``.
    """
    array = _returns("returns", returns, minimum=10)
    sharpes = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    if sharpes.size < 1 or not np.all(np.isfinite(sharpes)):
        raise ValidationError(f"trial Sharpe ratios must be one or more finite numbers, were {sharpes.size} values")
    variance = float(np.var(sharpes, ddof=1)) if sharpes.size > 1 else 0.0
    benchmark = expected_maximum_sharpe(int(sharpes.size), variance)
    sharpe = float(_per_period_sharpe(array[:, None])[0])
    third = float(skew(array)) if array.std() > 0 else 0.0
    fourth = float(kurtosis(array, fisher=False)) if array.std() > 0 else 3.0
    denominator = 1.0 - third * sharpe + (fourth - 1.0) / 4.0 * sharpe * sharpe
    statistic = (sharpe - benchmark) * math.sqrt(len(array) - 1) / math.sqrt(max(denominator, 1e-12))
    scale = math.sqrt(periods)
    return {
        "dsr": float(norm.cdf(statistic)),
        "sharpe": sharpe * scale,
        "expected_maximum_sharpe": benchmark * scale,
        "sharpe_per_period": sharpe,
        "expected_maximum_sharpe_per_period": benchmark,
        "trials": int(sharpes.size),
        "trial_variance": variance,
        "skewness": third,
        "kurtosis": fourth,
        "days": len(array),
    }


def minimum_detectable_sharpe_difference(
    n_days: int,
    *,
    correlation: float = 0.0,
    sharpe: float = 0.0,
    confidence: float = 0.95,
    power: float = 0.80,
    periods: int = PERIODS_PER_YEAR,
    standard_error: float | None = None,
) -> dict[str, float]:
    """The smallest annualised Sharpe difference a one-sided test at `confidence` detects with `power`.

    ``(Phi^-1(confidence) + Phi^-1(power)) * SE``. With `standard_error` (annualised, e.g. a bootstrap's)
    that is the SE; otherwise the delta-method SE for `n_days` paired i.i.d. days of two series of
    correlation `correlation`, both of annualised Sharpe ratio `sharpe`:
    ``sqrt(periods * [2 (1 - rho) + SR^2 (1 - rho^2)] / T)`` (SR per period).
    """
    if isinstance(n_days, bool) or not isinstance(n_days, int) or n_days < 2:
        raise ConfigError(f"n_days must be an integer >= 2, was {n_days!r}")
    if not -1.0 <= correlation <= 1.0:
        raise ConfigError(f"correlation must lie in [-1, 1], was {correlation!r}")
    multiplier = float(norm.ppf(_probability("confidence", confidence)) + norm.ppf(_probability("power", power)))
    if standard_error is None:
        per_period = sharpe / math.sqrt(periods)
        variance = (2.0 * (1.0 - correlation) + per_period * per_period * (1.0 - correlation * correlation)) / n_days
        standard_error = math.sqrt(periods * variance)
    elif not standard_error >= 0:
        raise ConfigError(f"standard_error must be >= 0, was {standard_error!r}")
    return {
        "minimum_detectable_difference": multiplier * float(standard_error),
        "standard_error": float(standard_error),
        "multiplier": multiplier,
        "days": float(n_days),
        "confidence": confidence,
        "power": power,
    }
