"""Exact subspaces: the linear span a set of vectors lies in, when it is much smaller than their dimension.

An embedder that maps k features linearly onto d > k components makes vectors that all lie in one
k-dimensional subspace: the default `WindowEmbedder` projects 110 window features (rank 107, some are
sums of others) onto 512 components. Coordinates in an orthonormal basis of that span preserve every
inner product between vectors in it exactly, and so every distance between them; a graph that searches
those coordinates computes each distance in about k/d of the time and memory. A query outside the span
loses nothing either: its inner product with a vector of the span is that of its projection, and the
distances follow from the projection's norm (`Subspace.corrected`).

The span is found from the data (an eigendecomposition of a sample's Gram matrix), and every vector
added later is checked against it, so a vector off the span is noticed, never silently distorted.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuraltrade.errors import ConfigError

#: The relative residual ``|x - Bᵀ B x| / |x|`` below which a vector counts as lying in the span. Float32
#: round-off of the projection leaves about 1e-6; a cosine distance moves by at most this much.
TOLERANCE = 1e-4
#: A direction of the span carries more than this share of the sample's energy; less is round-off.
NUMERICAL_RANK_SHARE = 1e-10
#: A span is trusted only from at least this many vectors per dimension: fewer vectors span themselves.
EVIDENCE_PER_DIMENSION = 2
#: A span is adopted only when its coordinates take at most this share of the dimension.
WORTHWHILE_SHARE = 0.5
#: Vectors a span is estimated from (an even sample of a larger set).
SAMPLE_ROWS = 20_000
#: Coordinates are padded with zeros to a multiple of this: SIMD distance kernels work in blocks of 16.
ALIGN = 16
_GEOMETRIES = ("angular", "euclidean", "dot")


@dataclass(frozen=True, eq=False)
class Subspace:
    """An orthonormal basis of a span: `basis` is ``(rows, dimension)`` float32, its first `rank` rows
    orthonormal, the rest zeros (padding to a multiple of `ALIGN`)."""

    basis: np.ndarray
    rank: int

    def __post_init__(self) -> None:
        basis = self.basis
        if not isinstance(basis, np.ndarray) or basis.ndim != 2 or basis.dtype != np.float32:
            raise ConfigError(f"a subspace basis is a 2-d float32 matrix, was {type(basis).__name__}")
        if not 1 <= self.rank <= basis.shape[0] <= basis.shape[1]:
            raise ConfigError(f"a subspace of rank {self.rank} cannot have a basis of shape {basis.shape}")

    @functools.cached_property
    def _transposed(self) -> np.ndarray:
        return np.ascontiguousarray(self.basis.T)

    @property
    def rows(self) -> int:
        """The number of coordinates a vector has in this subspace (padding included)."""
        return int(self.basis.shape[0])

    @property
    def dimension(self) -> int:
        """The dimension of the vectors the subspace lies in."""
        return int(self.basis.shape[1])

    @classmethod
    def find(cls, vectors: np.ndarray) -> Subspace | None:
        """Return the span of `vectors` (rows) when it is worth searching in, else None.

        None when there are too few vectors to tell (fewer than `EVIDENCE_PER_DIMENSION` per dimension),
        when the span takes more than `WORTHWHILE_SHARE` of the dimension, or when any of `vectors` lies
        off the span found from a sample of them (by more than `TOLERANCE`).
        """
        matrix = np.asarray(vectors)
        count, dimension = matrix.shape
        if count < EVIDENCE_PER_DIMENSION * dimension:
            return None
        step = max(1, count // SAMPLE_ROWS)
        sample = np.asarray(matrix[::step][:SAMPLE_ROWS], dtype=np.float64)
        # The Gram matrix's eigenvectors are the sample's right singular vectors; its eigenvalues, their
        # squares: the energy each direction carries. Float64 resolves energies down to ~1e-15 of the total.
        values, vectors_ = np.linalg.eigh(sample.T @ sample)
        values, vectors_ = np.maximum(values[::-1], 0.0), vectors_[:, ::-1]
        total = float(values.sum())
        if total <= 0.0:
            return None
        # The numerical rank: directions carrying more than round-off. Float32 vectors of an exact span
        # leave about 1e-13 of the energy per direction off it; the weakest real direction of the default
        # embedder's vectors carries about 1e-7. A direction kept by energy alone could still hold a large
        # share of a few vectors, so only round-off is dropped, and `outside` checks every vector.
        rank = int(np.count_nonzero(values > NUMERICAL_RANK_SHARE * total))
        rows = -(-rank // ALIGN) * ALIGN
        if rows > WORTHWHILE_SHARE * dimension:
            return None
        basis = np.zeros((rows, dimension), dtype=np.float32)
        basis[:rank] = vectors_[:, :rank].T
        found = cls(basis=basis, rank=rank)
        # Every vector given must lie in the span, not only the sample's.
        for start in range(0, count, SAMPLE_ROWS):
            block = np.asarray(matrix[start : start + SAMPLE_ROWS], dtype=np.float32)
            if found.outside(block, found.project(block)).any():
                return None
        return found

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Return the coordinates of `vectors` (rows, float32) in the subspace."""
        # A float32 product of C-ordered operands is C-ordered already: no copy on the per-query path.
        return np.asarray(vectors, dtype=np.float32) @ self._transposed

    def lift(self, coordinates: np.ndarray) -> np.ndarray:
        """Return the vectors of the full dimension that `coordinates` stand for."""
        return np.ascontiguousarray(np.asarray(coordinates, dtype=np.float32) @ self.basis)

    def outside(self, vectors: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
        """Return which of `vectors` (with their `coordinates`) lie off the span by more than `TOLERANCE`."""
        residual = np.asarray(vectors, dtype=np.float32) - self.lift(coordinates)
        off = np.einsum("ij,ij->i", residual, residual)
        norms = np.einsum("ij,ij->i", vectors, vectors)
        return np.asarray(off > TOLERANCE**2 * norms)

    def corrected(
        self, geometry: str, distances: np.ndarray, queries: np.ndarray, coordinates: np.ndarray
    ) -> np.ndarray:
        """Return the distances of `queries` to vectors of the span, from the `distances` a search of
        their `coordinates` measured (hnswlib's: cosine ``1 - cos``, l2 squared, ip ``1 - q·x``).

        Exact for vectors in the span, whatever the query: ``q·x = (Bq)·(Bx)`` and ``|x| = |Bx|``, so a
        cosine scales by ``|Bq| / |q|`` and a squared Euclidean distance grows by ``|q|² - |Bq|²``.
        Every query's distances move together, so the ranking a search found stands.
        """
        if geometry not in _GEOMETRIES:
            raise ConfigError(f"a subspace corrects {', '.join(_GEOMETRIES)} distances, not {geometry!r}")
        if geometry == "dot":
            return distances
        if len(queries) == 1:
            # One query (every store search): plain floats cost a tenth of the array arithmetic below.
            query_norm, coordinate_norm = float(queries[0] @ queries[0]), float(coordinates[0] @ coordinates[0])
            if geometry == "euclidean":
                return np.maximum(distances + max(query_norm - coordinate_norm, 0.0), 0.0)
            scale = min(math.sqrt(coordinate_norm / query_norm), 1.0) if query_norm > 0 else 0.0
            return 1.0 - (1.0 - distances) * scale
        query_norms = np.einsum("ij,ij->i", queries, queries).astype(np.float64)
        coordinate_norms = np.einsum("ij,ij->i", coordinates, coordinates).astype(np.float64)
        if geometry == "euclidean":
            return np.maximum(distances + np.maximum(query_norms - coordinate_norms, 0.0)[:, None], 0.0)
        ratio = np.divide(
            np.sqrt(coordinate_norms),
            np.sqrt(query_norms),
            out=np.zeros_like(query_norms),
            where=query_norms > 0,
        )
        return 1.0 - (1.0 - distances) * np.minimum(ratio, 1.0)[:, None]

    def to_plain(self) -> dict[str, Any]:
        """Return the subspace as plain JSON values (the basis as base64 of little-endian float32)."""
        return {
            "rank": self.rank,
            "rows": self.rows,
            "dimension": self.dimension,
            "basis": base64.b64encode(self.basis.astype("<f4").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_plain(cls, value: Any) -> Subspace:
        """Return the subspace `to_plain` described.

        Raises
        ------
        ConfigError
            If `value` is not such a description.
        """
        try:
            rows, dimension, rank = int(value["rows"]), int(value["dimension"]), int(value["rank"])
            raw = base64.b64decode(value["basis"], validate=True)
            basis = np.frombuffer(raw, dtype="<f4").reshape(rows, dimension).astype(np.float32)
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"not a subspace description: {error}") from error
        return cls(basis=basis, rank=rank)
