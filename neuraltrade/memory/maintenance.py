"""What an upkeep run of the vector memory checks and changes: `MaintenanceConfig`.

The run itself (integrity checks, recall audits, retention, index refresh, compaction) is storage work
and lives in `models.vector_maintenance`; this is the policy it follows, and its digest is stored with
every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from neuraltrade.canonical import digest
from neuraltrade.errors import ConfigError

__all__ = ["MAX_AUDIT_K", "MaintenanceConfig"]

#: The most neighbours a recall audit asks for per query. Searches for more are answered exactly (the
#: nearest-neighbour storage of a collection returns at most 4,096), so their recall measures nothing.
MAX_AUDIT_K = 4_096


@dataclass(frozen=True, kw_only=True)
class MaintenanceConfig:
    """What a maintenance run checks and changes; its digest is stored with the run.

    Attributes
    ----------
    recall_threshold
        A collection whose measured recall@k is below this fails the run.
    recall_samples, k, seed
        How many stored vectors the recall audit queries with, for how many neighbours, drawn how.
    retention_days
        Items older than this many days are deleted; None keeps everything.
    vacuum_every_days, max_free_page_ratio
        VACUUM is due this many days after the last one, or once free pages pass this share of the file.
    hnsw_collections
        Collections that keep an HNSW index even if no store opened them with one.
    oversample
        Candidates per result that the audit's quantized searches re-score (None: the store's default).
    """

    recall_threshold: float = 0.95
    recall_samples: int = 50
    k: int = 10
    seed: int = 20_241_125
    retention_days: int | None = None
    vacuum_every_days: int = 7
    max_free_page_ratio: float = 0.25
    hnsw_collections: tuple[str, ...] = ()
    oversample: int | None = None

    def __post_init__(self) -> None:
        if not _is_number(self.recall_threshold) or not 0.0 <= self.recall_threshold <= 1.0:
            raise ConfigError(f"recall_threshold must be in [0, 1], was {self.recall_threshold!r}")
        if not _is_number(self.max_free_page_ratio) or not 0.0 < self.max_free_page_ratio <= 1.0:
            raise ConfigError(f"max_free_page_ratio must be in (0, 1], was {self.max_free_page_ratio!r}")
        for name, low in (("recall_samples", 1), ("k", 1), ("vacuum_every_days", 0), ("oversample", 1)):
            value = getattr(self, name)
            if name == "oversample" and value is None:
                continue
            if not _is_int(value) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, was {value!r}")
        if self.k > MAX_AUDIT_K:
            raise ConfigError(f"k must be at most {MAX_AUDIT_K}, was {self.k}")
        if not _is_int(self.seed):
            raise ConfigError(f"seed must be an integer, was {self.seed!r}")
        if self.retention_days is not None and (not _is_int(self.retention_days) or self.retention_days < 1):
            raise ConfigError(f"retention_days must be a positive integer or None, was {self.retention_days!r}")
        names = self.hnsw_collections
        if isinstance(names, str) or not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"hnsw_collections must be a sequence of collection names, was {names!r}")
        object.__setattr__(self, "hnsw_collections", tuple(names))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the configuration."""
        return digest(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
