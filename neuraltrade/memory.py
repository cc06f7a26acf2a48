"""The vector memory's rules, independent of where vectors are stored.

A collection holds vectors of one dimension from one embedder; this module decides what it accepts.
The storage itself (sqlite-vec, later pgvector) lives in `models.vector_store`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from neuraltrade.embedding import EmbedderFingerprint
from neuraltrade.errors import ConfigError, DimensionMismatch, FingerprintMismatch, InvalidVector

METRICS = ("cosine", "l2", "inner_product")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")


@dataclass(frozen=True, kw_only=True)
class CollectionSpec:
    """A collection's identity: its name, the embedder that fills it and how distance is measured."""

    name: str
    fingerprint: EmbedderFingerprint
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"collection name {self.name!r} must be 1-48 lower-case letters, digits or underscores, "
                "starting with a letter"
            )
        if self.metric not in METRICS:
            raise ConfigError(f"collection metric {self.metric!r} is not one of {', '.join(METRICS)}")

    @property
    def dimension(self) -> int:
        """The dimension of every vector in the collection."""
        return self.fingerprint.dimension


def check_vectors(spec: CollectionSpec, fingerprint: EmbedderFingerprint, vectors: np.ndarray) -> np.ndarray:
    """Return `vectors` as a contiguous float32 matrix if `spec` may store them.

    Raises
    ------
    FingerprintMismatch
        If the vectors come from another embedder than the collection's.
    DimensionMismatch
        If their dimension is not the collection's.
    InvalidVector
        If the array is not two-dimensional or holds NaN or infinity (the first bad row is named).
    """
    if fingerprint.digest != spec.fingerprint.digest:
        raise FingerprintMismatch(spec.name, spec.fingerprint.describe(), fingerprint.describe())
    matrix = np.asarray(vectors)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise InvalidVector(f"collection {spec.name!r} takes a matrix of vectors, was given {matrix.ndim}-d")
    if matrix.shape[1] != spec.dimension:
        raise DimensionMismatch(spec.name, spec.dimension, int(matrix.shape[1]))
    if not np.issubdtype(matrix.dtype, np.number):
        raise InvalidVector(f"collection {spec.name!r} takes numbers, was given dtype {matrix.dtype}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise InvalidVector(
            f"collection {spec.name!r} refuses vector {first} of {len(matrix)}: it holds NaN or infinity"
        )
    return matrix
