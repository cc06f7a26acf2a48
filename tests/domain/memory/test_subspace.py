"""Exact subspaces of low-rank vectors (`neuraltrade.memory.subspace`)."""

from __future__ import annotations

import numpy as np
import pytest

from neuraltrade.errors import ConfigError
from neuraltrade.memory.embedding import WindowEmbedder
from neuraltrade.memory.subspace import ALIGN, SAMPLE_ROWS, TOLERANCE, Subspace
from tests.domain.memory.test_embedding import small_market

DIMENSION = 256
RANK = 40


def low_rank(count: int, *, seed: int = 0, rank: int = RANK, dimension: int = DIMENSION) -> np.ndarray:
    """Unit vectors that are random combinations of `rank` fixed directions, as a linear embedder makes."""
    generator = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).standard_normal((rank, dimension))
    vectors = (generator.standard_normal((count, rank)) @ mixing).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact(geometry: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    queries, vectors = queries.astype(np.float64), vectors.astype(np.float64)
    if geometry == "angular":
        norms = np.linalg.norm(queries, axis=1)[:, None] * np.linalg.norm(vectors, axis=1)[None, :]
        return 1.0 - queries @ vectors.T / norms
    if geometry == "euclidean":
        return ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    return 1.0 - queries @ vectors.T


def test_the_span_of_low_rank_vectors_is_found_with_its_rank_and_padded_to_the_simd_block() -> None:
    subspace = Subspace.find(low_rank(2_000))
    assert subspace is not None
    assert (subspace.rank, subspace.rows, subspace.dimension) == (RANK, 48, DIMENSION)
    basis = subspace.basis.astype(np.float64)
    assert np.allclose(basis[:RANK] @ basis[:RANK].T, np.eye(RANK), atol=1e-5)
    assert not basis[RANK:].any() and subspace.rows % ALIGN == 0


def test_vectors_of_the_span_survive_projection_and_lifting() -> None:
    vectors = low_rank(2_000)
    subspace = Subspace.find(vectors)
    assert subspace is not None
    coordinates = subspace.project(vectors)
    assert coordinates.shape == (2_000, subspace.rows) and coordinates.dtype == np.float32
    assert np.abs(subspace.lift(coordinates) - vectors).max() < 1e-5
    assert not subspace.outside(vectors, coordinates).any()


def test_a_vector_off_the_span_is_noticed() -> None:
    subspace = Subspace.find(low_rank(2_000))
    assert subspace is not None
    stray = np.random.default_rng(5).standard_normal((3, DIMENSION)).astype(np.float32)
    # Barely off: a residual of 10x the tolerance on one vector of the span.
    near = low_rank(1, seed=6)
    direction = stray[0] - subspace.lift(subspace.project(stray[:1]))[0]
    near = near + (10 * TOLERANCE) * direction / np.linalg.norm(direction)
    mixed = np.vstack([low_rank(2, seed=7), stray, near]).astype(np.float32)
    assert subspace.outside(mixed, subspace.project(mixed)).tolist() == [False, False, True, True, True, True]


@pytest.mark.parametrize(
    ("vectors", "why"),
    [
        (low_rank(2 * DIMENSION - 1), "too few vectors to tell a span"),
        (np.random.default_rng(1).standard_normal((2_000, DIMENSION)).astype(np.float32), "full rank"),
        (low_rank(2_000, rank=129), "a span of more than half the dimension"),
        (np.zeros((2_000, DIMENSION), dtype=np.float32), "no energy at all"),
    ],
)
def test_no_subspace_is_adopted_when_it_would_not_pay_or_cannot_be_trusted(vectors: np.ndarray, why: str) -> None:
    assert Subspace.find(vectors) is None, why


def test_no_subspace_is_adopted_when_a_vector_outside_the_sample_lies_off_its_span() -> None:
    vectors = low_rank(2 * SAMPLE_ROWS + 2)
    # Every other row is sampled; row 1 is not, and lies off the span of the others.
    vectors[1] = np.random.default_rng(8).standard_normal(DIMENSION).astype(np.float32)
    assert Subspace.find(vectors) is None
    vectors[1] = vectors[3]
    assert Subspace.find(vectors) is not None


@pytest.mark.parametrize("geometry", ["angular", "euclidean", "dot"])
def test_distances_measured_between_coordinates_are_corrected_to_the_exact_ones(geometry: str) -> None:
    vectors = low_rank(2_000)
    subspace = Subspace.find(vectors)
    assert subspace is not None
    # Queries off the span (full rank, not unit length) as well as on it.
    queries = np.vstack([2.5 * np.random.default_rng(3).standard_normal((5, DIMENSION)), low_rank(3, seed=4)]).astype(
        np.float32
    )
    coordinates = subspace.project(queries)
    between = exact(geometry, coordinates, subspace.project(vectors[:50]))
    corrected = subspace.corrected(geometry, between, queries, coordinates)
    assert np.allclose(corrected, exact(geometry, queries, vectors[:50]), atol=1e-5)
    # One query at a time (the store's searches) gives the same distances.
    for row in range(len(queries)):
        alone = subspace.corrected(geometry, between[row : row + 1], queries[row : row + 1], coordinates[row : row + 1])
        assert np.allclose(alone, corrected[row : row + 1], atol=1e-9)
    # The ranking of each query stands.
    assert (np.argsort(corrected, axis=1, kind="stable") == np.argsort(between, axis=1, kind="stable")).all()


def test_the_default_embedders_vectors_lie_in_a_span_of_107_dimensions() -> None:
    vectors = WindowEmbedder().embed(small_market(3_000))
    subspace = Subspace.find(vectors)
    assert subspace is not None and (subspace.rank, subspace.rows) == (107, 112)


def test_a_subspace_round_trips_through_plain_json_values() -> None:
    subspace = Subspace.find(low_rank(2_000))
    assert subspace is not None
    again = Subspace.from_plain(subspace.to_plain())
    assert again.rank == subspace.rank and np.array_equal(again.basis, subspace.basis)


@pytest.mark.parametrize(
    "value", [None, {}, {"rank": 2, "rows": 16, "dimension": 32, "basis": "not base64!"}, {"rank": 2, "rows": 16}]
)
def test_a_broken_subspace_description_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="not a subspace description"):
        Subspace.from_plain(value)


def test_a_basis_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match="rank 20 cannot have a basis of shape"):
        Subspace(basis=np.zeros((16, 32), dtype=np.float32), rank=20)
