"""Strategy `neural`: a small multi-layer perceptron reads the embedded market state and calls the next move.

Features are the `WindowEmbedder` vectors of the window ending at each bar (see `market_state_vectors`);
the label of bar j is whether the close rises over the next `horizon` bars. Training walks forward and
never reads the future: the model used on bar i was fitted on bar r <= i, on samples j whose label was
known on bar r (``j + horizon <= r``), the last `train_bars` of them. Models are refitted every
`retrain_every` bars, on a schedule counted from the first bar with `min_train_samples` labelled
samples, so a prefix of a history has the same schedule as the whole.

The opinion on bar i is +1 when the model's probability of a rise exceeds `threshold`, -1 when it is
below ``1 - threshold``, none in between; a target is emitted when the opinion changes (a repeated
target would make the engine enter again), with confidence ``|p - 0.5| * 2``.

scikit-learn's ``MLPClassifier`` (L-BFGS, no early stopping, seeded) does the fitting; it is imported
when a model is first fitted, so importing this module stays cheap. Predictions are computed here from
the fitted weights with ``np.einsum``, whose rounding does not depend on how many bars are predicted at
once (scikit-learn's BLAS product's does, and a probability that changes in its last bits once later
bars exist fails `verify_causality`).
"""

from __future__ import annotations

import math
import pickle
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError, NotEnoughHistory, SerializationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedderConfig
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, Strategy, StrategyConfig
from neuraltrade.strategies.indicators import decide_on_change, market_state_vectors
from neuraltrade.strategies.needs import ModelVersion, Products, model_version_uuid
from neuraltrade.strategies.parameters import require_integer, require_number
from neuraltrade.timestamps import from_microseconds


@dataclass(frozen=True, kw_only=True)
class NeuralConfig(StrategyConfig):
    """Parameters of `neural`.

    Parameters
    ----------
    horizon
        Bars ahead whose return is the label.
    train_bars
        Samples in each training window (the most recent labelled ones).
    min_train_samples
        Labelled samples needed before the first model is fitted.
    retrain_every
        Bars between refits.
    threshold
        Probability of a rise above which the opinion is long (and below ``1 - threshold`` short).
    hidden_units, alpha, max_iter, seed
        The network's one hidden layer, its L2 penalty, L-BFGS iterations and random state.
    window, dimension, embedder_seed
        The `WindowEmbedder` of the features.
    """

    horizon: int = 5
    train_bars: int = 500
    min_train_samples: int = 200
    retrain_every: int = 63
    threshold: float = 0.55
    hidden_units: int = 16
    alpha: float = 1e-3
    max_iter: int = 50
    seed: int = 7
    window: int = 32
    dimension: int = 32
    embedder_seed: int = 20_240_601

    def __post_init__(self) -> None:
        for name, minimum in (
            ("horizon", 1),
            ("train_bars", 10),
            ("min_train_samples", 10),
            ("retrain_every", 1),
            ("hidden_units", 1),
            ("max_iter", 1),
            ("seed", 0),
            ("window", 8),
            ("dimension", 8),
            ("embedder_seed", 0),
        ):
            require_integer("neural", name, getattr(self, name), minimum)
        if self.min_train_samples > self.train_bars:
            raise ConfigError(
                f"neural parameter min_train_samples ({self.min_train_samples}) must not exceed "
                f"train_bars ({self.train_bars})"
            )
        require_number("neural", "threshold", self.threshold, at_least=0.5, below=1.0)
        require_number("neural", "alpha", self.alpha, at_least=0.0)
        # The embedder checks its own bounds too (a dimension of at most 8192).
        WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)

    @property
    def embedder_config(self) -> WindowEmbedderConfig:
        """The configuration of the features' embedder."""
        return WindowEmbedderConfig(window=self.window, dimension=self.dimension, seed=self.embedder_seed)


@dataclass(frozen=True, kw_only=True)
class TrainedModel:
    """A model fitted on the latest window of a history, with what it was fitted on and how it fared.

    `trained_from` and `trained_to` are the times of the first and last training samples (labels reach
    `horizon` bars further). `test_samples` and `out_of_sample_hit_rate` come from the walk-forward run
    over the same history. `model` is the pickled classifier: read it with `load_model`, and only from
    a store the platform wrote (unpickling runs code).
    """

    version_id: str
    symbol: str
    trained_from: datetime
    trained_to: datetime
    train_samples: int
    test_samples: int
    out_of_sample_hit_rate: float | None
    parameters: Mapping[str, Any]
    model: bytes = field(repr=False)

    @property
    def version_uuid(self) -> uuid.UUID:
        """The version as a UUID (what signals link to)."""
        return model_version_uuid(self.version_id)

    def model_version(self) -> ModelVersion:
        """This model as the model version a backtest produces, with its bytes."""
        return ModelVersion(
            id=self.version_id,
            strategy=Neural.name,
            symbol=self.symbol,
            trained_from=self.trained_from,
            trained_to=self.trained_to,
            train_samples=self.train_samples,
            test_samples=self.test_samples,
            out_of_sample_hit_rate=self.out_of_sample_hit_rate,
            parameters=self.parameters,
            model=self.model,
        )


class Neural(Strategy):
    """Walk-forward MLP on market-state vectors; see the module documentation for the schedule."""

    name: ClassVar[str] = "neural"
    config: NeuralConfig

    def __init__(self, config: NeuralConfig | None = None) -> None:
        super().__init__(config or NeuralConfig())

    def signals(self, history: PriceHistory) -> SignalFrame:
        """Return the walk-forward decisions; `details` names the model versions and the out-of-sample hit rate.

        `out_of_sample_decisions` counts the bars where the model called a direction (whether or not the
        call changed the target) and whose outcome lies inside the history; `out_of_sample_hit_rate` is
        the share of them whose call matched the realised move, a rise or not (None without any).
        """
        config = self.config
        count = len(history)
        inputs = _inputs(market_state_vectors(history, config.embedder_config))
        rises = _rises(history.close, config.horizon)
        probability = np.full(count, np.nan)
        versions = np.full(count, -1)
        version_ids: list[str] = []
        for refit in range(first_refit_bar(config), count, config.retrain_every):
            first, last = training_samples(config, refit)
            model = _fit(inputs[first : last + 1], rises[first : last + 1], config)
            if model is None:
                continue
            stop = min(count, refit + config.retrain_every)
            probability[refit:stop] = _probability_of_rise(model, inputs[refit:stop])
            versions[refit:stop] = len(version_ids)
            version_ids.append(
                model_version_id(config, history.symbol, history.timestamps[first], history.timestamps[last])
            )

        opinion = np.full(count, np.nan)
        opinion[probability > config.threshold] = 1.0
        opinion[probability < 1.0 - config.threshold] = -1.0
        target = decide_on_change(opinion)
        confidence = np.nan_to_num(np.abs(probability - 0.5) * 2.0, nan=0.0)
        links = {
            int(bar): (
                CausalLink(
                    cause_id=model_version_uuid(version_ids[versions[bar]]),
                    cause_kind=CauseKind.MODEL_VERSION,
                    relation=Relation.PREDICTED_BY,
                ),
            )
            for bar in np.flatnonzero(~np.isnan(target))
        }
        # An outcome is known when bar + horizon lies inside the history; the last `horizon` calls are open.
        calls, hits = _out_of_sample_calls(config, probability, rises, 0, count)
        return SignalFrame(
            target=target,
            confidence=np.where(np.isnan(target), 0.0, confidence),
            links=links,
            features={"probability_of_rise": probability},
            warmup=first_refit_bar(config),
            details={
                "model_versions": version_ids,
                "out_of_sample_hit_rate": hits / calls if calls else None,
                "out_of_sample_decisions": calls,
            },
        )

    def products(self, history: PriceHistory, frame: SignalFrame) -> Products:
        """Return every model version `frame` (this strategy's signals over `history`) links to, described
        without its bytes, and the model fitted on the latest samples (the nightly retrain) with its bytes;
        `details` name that model, or say why there is none (too little history)."""
        refits = walk_forward_versions(history, self.config, frame)
        try:
            latest = train_latest(history, self.config, walk_forward=frame)
        except NotEnoughHistory as error:
            return Products(model_versions=refits, details={"model_version": None, "model_skipped": str(error)})
        # The latest model is a refit of the walk-forward when the history ends on a refit bar: keep it once.
        earlier = tuple(version for version in refits if version.id != latest.version_id)
        return Products(model_versions=(*earlier, latest.model_version()), details={"model_version": latest.version_id})


def first_refit_bar(config: NeuralConfig) -> int:
    """Return the first bar on which `min_train_samples` samples have a known label."""
    return config.window - 1 + config.horizon + config.min_train_samples - 1


def training_samples(config: NeuralConfig, bar: int) -> tuple[int, int]:
    """Return the first and last sample bars (inclusive) a model fitted on bar `bar` learns from."""
    last = bar - config.horizon
    return max(config.window - 1, last - config.train_bars + 1), last


def model_version_id(config: NeuralConfig, symbol: str, first_sample: int, last_sample: int) -> str:
    """Return the version id of a model: the digest of its configuration, symbol and training span.

    `first_sample` and `last_sample` are epoch microseconds of the first and last training samples.
    """
    return digest(
        {
            "strategy": Neural.name,
            "config": config.digest,
            "symbol": symbol,
            "trained_from": _moment(first_sample),
            "trained_to": _moment(last_sample),
        }
    )


def walk_forward_versions(history: PriceHistory, config: NeuralConfig, frame: SignalFrame) -> tuple[ModelVersion, ...]:
    """Describe each model the walk-forward `frame` over `history` names (``details["model_versions"]``):
    its training span, and its out-of-sample calls on the bars it decided (those whose outcome lies inside
    the history) with their hit rate. Nothing is fitted: the schedule and `frame`'s probabilities suffice."""
    named = set(frame.details.get("model_versions", ()))
    probability = frame.features["probability_of_rise"]
    rises = _rises(history.close, config.horizon)
    count = len(history)
    versions = []
    for refit in range(first_refit_bar(config), count, config.retrain_every):
        first, last = training_samples(config, refit)
        version_id = model_version_id(config, history.symbol, history.timestamps[first], history.timestamps[last])
        if version_id not in named:
            continue  # the labels of its window were all alike: no model was fitted
        calls, hits = _out_of_sample_calls(config, probability, rises, refit, min(count, refit + config.retrain_every))
        versions.append(
            ModelVersion(
                id=version_id,
                strategy=Neural.name,
                symbol=history.symbol,
                trained_from=_moment(history.timestamps[first]),
                trained_to=_moment(history.timestamps[last]),
                train_samples=last - first + 1,
                test_samples=calls,
                out_of_sample_hit_rate=hits / calls if calls else None,
                parameters=config.to_plain(),
            )
        )
    return tuple(versions)


def train_latest(
    history: PriceHistory, config: NeuralConfig, *, walk_forward: SignalFrame | None = None
) -> TrainedModel:
    """Fit a model on the latest `train_bars` labelled samples of `history` (the nightly retrain).

    The walk-forward run over the same history supplies the out-of-sample figures: pass it as
    `walk_forward` if it was already computed (a backtest's frame), else it is run here.

    Raises
    ------
    NotEnoughHistory
        If fewer than `min_train_samples` samples have a known label, or their labels are all alike.
    """
    count = len(history)
    first, last = training_samples(config, count - 1)
    samples = last - first + 1
    if samples < config.min_train_samples:
        raise NotEnoughHistory(
            f"{history.symbol}: {count} bars give {max(samples, 0)} labelled samples, the neural strategy "
            f"needs {config.min_train_samples} (window {config.window}, horizon {config.horizon})"
        )
    inputs = _inputs(market_state_vectors(history, config.embedder_config))
    rises = _rises(history.close, config.horizon)
    model = _fit(inputs[first : last + 1], rises[first : last + 1], config)
    if model is None:
        raise NotEnoughHistory(f"{history.symbol}: all {samples} training labels are alike; nothing to learn")
    if walk_forward is None:
        walk_forward = Neural(config).signals(history)
    return TrainedModel(
        version_id=model_version_id(config, history.symbol, history.timestamps[first], history.timestamps[last]),
        symbol=history.symbol,
        trained_from=_moment(history.timestamps[first]),
        trained_to=_moment(history.timestamps[last]),
        train_samples=samples,
        test_samples=int(walk_forward.details["out_of_sample_decisions"]),
        out_of_sample_hit_rate=walk_forward.details["out_of_sample_hit_rate"],
        parameters=config.to_plain(),
        model=pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
    )


def load_model(data: bytes) -> Any:
    """Return the classifier pickled in a `TrainedModel`'s `model` bytes.

    Raises
    ------
    SerializationError
        If the bytes do not hold a fitted ``MLPClassifier``.
    """
    from sklearn.neural_network import MLPClassifier

    try:
        model = pickle.loads(data)
    except Exception as error:  # unpickling raises whatever the bytes provoke
        raise SerializationError(f"model bytes ({len(data)} bytes) cannot be unpickled: {error}") from error
    if not isinstance(model, MLPClassifier) or not hasattr(model, "coefs_"):
        raise SerializationError(f"model bytes hold a {type(model).__name__}, not a fitted MLPClassifier")
    return model


def predict_latest(trained: TrainedModel, history: PriceHistory) -> float:
    """Return `trained`'s probability that the close rises over the horizon after `history`'s last bar."""
    config = NeuralConfig(**trained.parameters)
    if len(history) < config.window:
        raise NotEnoughHistory(f"{history.symbol}: {len(history)} bars, the embedder needs {config.window}")
    vector = market_state_vectors(history, config.embedder_config)[-1:]
    return float(_probability_of_rise(load_model(trained.model), _inputs(vector))[0])


def _out_of_sample_calls(
    config: NeuralConfig, probability: np.ndarray, rises: np.ndarray, start: int, stop: int
) -> tuple[int, int]:
    """Count the calls (a probability of a rise past the threshold, either way) on bars `start` to `stop`
    (exclusive) whose outcome lies inside the history, and how many matched the realised move."""
    end = max(start, min(stop, len(probability) - config.horizon))
    window = probability[start:end]
    opinion = np.where(window > config.threshold, 1.0, np.where(window < 1.0 - config.threshold, -1.0, np.nan))
    called = ~np.isnan(opinion)
    realised = np.where(rises[start:end] == 1.0, 1.0, -1.0)
    return int(called.sum()), int(np.sum(opinion[called] == realised[called]))


def _inputs(vectors: np.ndarray) -> np.ndarray:
    # Unit vectors have components of about 1/sqrt(dimension); the network trains better near unit scale.
    return vectors.astype(np.float64) * math.sqrt(vectors.shape[1])


def _rises(close: np.ndarray, horizon: int) -> np.ndarray:
    """1.0 where the close `horizon` bars later is higher, 0.0 where not, NaN where it lies beyond the history."""
    rises = np.full(len(close), np.nan)
    if len(close) > horizon:
        rises[: len(close) - horizon] = (close[horizon:] > close[: len(close) - horizon]).astype(np.float64)
    return rises


def _fit(inputs: np.ndarray, labels: np.ndarray, config: NeuralConfig) -> Any:
    """Return a fitted classifier, or None when the labels hold one class only."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    if len(np.unique(labels)) < 2:
        return None
    model = MLPClassifier(
        hidden_layer_sizes=(config.hidden_units,),
        activation="relu",
        solver="lbfgs",
        alpha=config.alpha,
        max_iter=config.max_iter,
        random_state=config.seed,
    )
    # A bounded number of iterations is the design (speed, determinism): not converging is expected.
    # One BLAS thread: products this small gain nothing from more, and on a busy machine the threads of a
    # 500 x 32 fit contend so badly that it takes six times as long (measured on 2 cores).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(inputs, labels.astype(np.int64))
    return model


def _probability_of_rise(model: Any, inputs: np.ndarray) -> np.ndarray:
    """The classifier's probability of class 1, computed row by row in a fixed order (see the module doc)."""
    hidden = inputs
    for weights, bias in zip(model.coefs_[:-1], model.intercepts_[:-1], strict=True):
        hidden = np.maximum(np.einsum("ij,jk->ik", hidden, weights) + bias, 0.0)
    logits = np.einsum("ij,jk->ik", hidden, model.coefs_[-1])[:, 0] + model.intercepts_[-1][0]
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
    return probability


def _moment(microseconds: int | np.integer[Any]) -> datetime:
    return from_microseconds(int(microseconds))
