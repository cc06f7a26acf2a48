"""Behaviour of the walk-forward `neural` strategy and its nightly retrain (`neuraltrade.strategies.neural`)."""

from __future__ import annotations

import pickle
from datetime import UTC

import numpy as np
import pytest

from neuraltrade.errors import ConfigError, NotEnoughHistory, SerializationError
from neuraltrade.market.history import PriceHistory
from neuraltrade.memory.embedding import WindowEmbedder, WindowEmbedderConfig
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.strategies.base import SignalFrame, verify_causality
from neuraltrade.strategies.indicators import bar_frame, market_state_vectors
from neuraltrade.strategies.neural import (
    Neural,
    NeuralConfig,
    _probability_of_rise,
    first_refit_bar,
    load_model,
    model_version_id,
    model_version_uuid,
    predict_latest,
    train_latest,
    training_samples,
)
from tests.domain.strategy_support import moment, periodic_history, real_history

#: Small enough that a 1,200-bar history trains 10 models in well under a second.
SMALL = NeuralConfig(train_bars=200, min_train_samples=100, retrain_every=100, max_iter=30, horizon=4)


@pytest.fixture(scope="module")
def nvda() -> tuple[PriceHistory, SignalFrame]:
    """The first 1,200 NVDA bars and the `SMALL` strategy's signals on them."""
    history = real_history("NVDA").head(1200)
    return history, Neural(SMALL).signals(history)


def test_market_state_vectors_are_the_embedders_and_the_same_on_every_prefix() -> None:
    history = real_history("NVDA").head(1500)
    config = WindowEmbedderConfig(window=32, dimension=32)
    vectors = market_state_vectors(history, config)
    assert np.all(np.isnan(vectors[:31]))
    embedded = WindowEmbedder(config).embed(bar_frame(history))
    np.testing.assert_allclose(vectors[31:], embedded, atol=1e-6)
    for cut in (32, 33, 700, 1499):
        assert np.array_equal(market_state_vectors(history.head(cut), config), vectors[:cut], equal_nan=True)


def test_neural_signals_are_valid_and_causal_on_real_data(nvda: tuple[PriceHistory, SignalFrame]) -> None:
    history, frame = nvda
    strategy = Neural(SMALL)
    frame.check(history, strategy.strategy_id)
    # Cuts at a refit, between refits, and just after decisions (a look-ahead shows on a prefix's last bar).
    after_decisions = [int(bar) + 1 for bar in frame.decisions()[3::150]]
    verify_causality(strategy, history, frame, cuts=sorted({334, 777, *after_decisions}))
    assert frame.warmup == first_refit_bar(SMALL) == 31 + 4 + 99
    assert np.all(frame.decisions() >= frame.warmup)
    assert len(frame.details["model_versions"]) == len(range(frame.warmup, 1200, 100))


def test_every_model_learns_only_from_labels_known_when_it_is_fitted() -> None:
    for refit in range(first_refit_bar(SMALL), 2000, SMALL.retrain_every):
        first, last = training_samples(SMALL, refit)
        assert last + SMALL.horizon <= refit
        assert first >= SMALL.window - 1
        assert last - first + 1 == min(SMALL.train_bars, last - SMALL.window + 2)
        assert last - first + 1 >= SMALL.min_train_samples


def test_decisions_link_the_version_of_the_model_that_made_them(nvda: tuple[PriceHistory, SignalFrame]) -> None:
    history, frame = nvda
    versions = frame.details["model_versions"]
    assert len(set(versions)) == len(versions)
    refits = list(range(frame.warmup, 1200, SMALL.retrain_every))
    for bar, links in frame.links.items():
        model = max(index for index, refit in enumerate(refits) if refit <= bar)
        first, last = training_samples(SMALL, refits[model])
        expected = model_version_id(SMALL, "NVDA", history.timestamps[first], history.timestamps[last])
        assert versions[model] == expected
        assert links == (
            CausalLink(
                cause_id=model_version_uuid(expected),
                cause_kind=CauseKind.MODEL_VERSION,
                relation=Relation.PREDICTED_BY,
            ),
        )
    assert set(frame.links) == set(frame.decisions().tolist())


def test_a_model_version_depends_on_configuration_symbol_and_training_span() -> None:
    base = model_version_id(SMALL, "NVDA", 1_000, 2_000)
    assert base == model_version_id(SMALL, "NVDA", 1_000, 2_000)
    assert (
        len({base, model_version_id(SMALL, "ORCL", 1_000, 2_000), model_version_id(SMALL, "NVDA", 1_000, 2_001)}) == 3
    )
    other = NeuralConfig(**{**SMALL.to_plain(), "seed": 8})
    assert model_version_id(other, "NVDA", 1_000, 2_000) != base


def test_the_network_learns_a_market_whose_next_move_is_written_in_its_recent_past() -> None:
    frame = Neural(SMALL).signals(periodic_history(900, noise=0.01))
    assert frame.details["out_of_sample_hit_rate"] > 0.8
    assert frame.details["out_of_sample_decisions"] > 500


def test_the_out_of_sample_hit_rate_counts_only_calls_whose_outcome_is_known(
    nvda: tuple[PriceHistory, SignalFrame],
) -> None:
    history, frame = nvda
    probability = frame.features["probability_of_rise"]
    calls = np.flatnonzero((probability > SMALL.threshold) | (probability < 1 - SMALL.threshold))
    known = calls[calls + SMALL.horizon < len(history)]
    realised = np.where(history.close[known + SMALL.horizon] > history.close[known], 1.0, -1.0)
    predicted = np.where(probability[known] > 0.5, 1.0, -1.0)
    assert frame.details["out_of_sample_decisions"] == len(known)
    assert frame.details["out_of_sample_hit_rate"] == pytest.approx(np.mean(predicted == realised))
    decided = frame.decisions()
    np.testing.assert_allclose(frame.confidence[decided], np.abs(probability[decided] - 0.5) * 2)


def test_predictions_equal_scikit_learns_own() -> None:
    history = real_history("NVDA").head(700)
    trained = train_latest(history, SMALL)
    model = load_model(trained.model)
    inputs = market_state_vectors(history, SMALL.embedder_config)[40:].astype(np.float64) * np.sqrt(SMALL.dimension)
    np.testing.assert_allclose(_probability_of_rise(model, inputs), model.predict_proba(inputs)[:, 1], atol=1e-12)


def test_the_nightly_retrain_fits_the_latest_window_and_says_so(nvda: tuple[PriceHistory, SignalFrame]) -> None:
    history, walk_forward = nvda
    trained = train_latest(history, SMALL)
    first, last = training_samples(SMALL, 1199)
    assert (first, last) == (1195 - 199, 1195)
    assert trained.trained_from == moment(history.timestamps[first])
    assert trained.trained_to == moment(history.timestamps[last])
    assert trained.trained_from.tzinfo == UTC
    assert trained.train_samples == SMALL.train_bars
    assert trained.version_id == model_version_id(SMALL, "NVDA", history.timestamps[first], history.timestamps[last])
    assert trained.version_uuid == model_version_uuid(trained.version_id)
    assert trained.test_samples == walk_forward.details["out_of_sample_decisions"]
    assert trained.out_of_sample_hit_rate == walk_forward.details["out_of_sample_hit_rate"]
    assert NeuralConfig(**trained.parameters) == SMALL
    assert 0.0 <= predict_latest(trained, history) <= 1.0
    again = train_latest(history, SMALL, walk_forward=walk_forward)
    assert again == trained, "a refit of the same data is not the same model"


def test_the_products_are_every_model_the_signals_link_to_and_the_latest_with_its_bytes(
    nvda: tuple[PriceHistory, SignalFrame],
) -> None:
    history, frame = nvda
    products = Neural(SMALL).products(history, frame)

    *refits, latest = products.model_versions
    trained = train_latest(history, SMALL, walk_forward=frame)
    assert latest == trained.model_version() and latest.model == trained.model
    assert products.details == {"model_version": trained.version_id}
    # The walk-forward's refits are described, not kept: their bytes would be a model per refit.
    assert [version.id for version in refits] == frame.details["model_versions"]
    assert all(version.model is None and version.strategy == "neural" for version in refits)
    linked = {link.cause_id for links in frame.links.values() for link in links}
    assert linked and linked <= {version.record_id for version in products.model_versions}
    first, last = training_samples(SMALL, first_refit_bar(SMALL))
    assert (refits[0].trained_from, refits[0].trained_to) == (
        moment(history.timestamps[first]),
        moment(history.timestamps[last]),
    )
    assert refits[0].train_samples == last - first + 1 and refits[0].parameters == SMALL.to_plain()
    # Each refit is judged on the calls it made: together, the walk-forward's.
    assert sum(version.test_samples for version in refits) == frame.details["out_of_sample_decisions"]
    hits = sum(round((version.out_of_sample_hit_rate or 0.0) * version.test_samples) for version in refits)
    assert hits / frame.details["out_of_sample_decisions"] == pytest.approx(frame.details["out_of_sample_hit_rate"])


def test_without_history_enough_to_retrain_the_products_say_why() -> None:
    history = real_history("NVDA").head(120)
    products = Neural(SMALL).products(history, Neural(SMALL).signals(history))
    assert products.model_versions == ()
    assert products.details["model_version"] is None
    assert "NVDA: 120 bars give 85 labelled samples" in products.details["model_skipped"]


def test_the_nightly_retrain_refuses_a_history_too_short_to_learn_from() -> None:
    with pytest.raises(NotEnoughHistory, match="NVDA: 120 bars give 85 labelled samples"):
        train_latest(real_history("NVDA").head(120), SMALL)


def test_model_bytes_that_hold_no_model_are_refused() -> None:
    with pytest.raises(SerializationError, match="cannot be unpickled"):
        load_model(b"not a pickle")
    with pytest.raises(SerializationError, match="hold a dict"):
        load_model(pickle.dumps({"weights": [1, 2]}))


def test_a_history_shorter_than_the_first_refit_has_no_decisions() -> None:
    history = real_history("NVDA").head(100)
    frame = Neural(SMALL).signals(history)
    frame.check(history, "neural")
    assert len(frame.decisions()) == 0
    assert frame.details["model_versions"] == []
    assert frame.details["out_of_sample_hit_rate"] is None


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"horizon": 0}, "horizon"),
        ({"threshold": 0.4}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"min_train_samples": 600}, r"min_train_samples \(600\) must not exceed train_bars \(500\)"),
        ({"window": 4}, "window"),
        ({"dimension": 10_000}, "dimension"),
        ({"alpha": -1.0}, "alpha"),
    ],
)
def test_neural_refuses_parameters_naming_the_value(parameters: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        NeuralConfig(**parameters)  # type: ignore[arg-type]
