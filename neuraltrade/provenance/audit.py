"""What `neuraltrade verify` reports: each failure as a finding that names its record, and the summary.

A finding names the record (kind and id; a checkpoint by its file), the check that failed and why, in
one sentence. Findings come in the order the checks run: the checkpoints, the log entry by entry, the
stored records kind by kind, then links, patterns and retrievals; the first is what a failing run names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from neuraltrade.provenance.checkpoint import SignedCheckpoint
from neuraltrade.provenance.keys import KeyList, PublicKey


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One thing that does not verify: `kind` and `record_id` of the record, the `check`, why."""

    kind: str
    record_id: str
    check: str
    detail: str

    def sentence(self) -> str:
        return f"{self.kind} {self.record_id}: {self.check}: {self.detail}"

    def to_plain(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.record_id, "check": self.check, "detail": self.detail}


@dataclass(kw_only=True)
class Report:
    """The outcome of one verification, with what it covered."""

    origin: str | None
    log_size: int
    checkpoint_size: int | None
    checkpoints: int
    records: int
    signatures: int
    links: int
    patterns: int
    retrievals: int
    run_id: uuid.UUID | None = None
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def unanchored(self) -> int:
        """Log entries after the trusted checkpoint: signed, not yet anchored by a checkpoint."""
        return self.log_size - (self.checkpoint_size or 0)

    def summary(self) -> str:
        scope = f"run {self.run_id}: " if self.run_id is not None else ""
        if not self.ok:
            more = f" (and {len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
            return f"FAILED {scope}{self.findings[0].sentence()}{more}"
        anchor = (
            f"log of {self.log_size:,} entries, {self.checkpoint_size:,} anchored by the trusted checkpoint"
            if self.checkpoint_size is not None
            else f"log of {self.log_size:,} entries, no checkpoint"
        )
        return (
            f"verified {scope}{self.records:,} records, {self.signatures:,} signatures, {self.links:,} links, "
            f"{self.patterns:,} patterns, {self.retrievals:,} retrievals; {anchor}; "
            f"{self.checkpoints} checkpoint(s) consistent ({self.seconds:.1f} s)"
        )

    def to_plain(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "origin": self.origin,
            "run_id": None if self.run_id is None else str(self.run_id),
            "log_size": self.log_size,
            "checkpoint_size": self.checkpoint_size,
            "unanchored": self.unanchored,
            "checkpoints": self.checkpoints,
            "records": self.records,
            "signatures": self.signatures,
            "links": self.links,
            "patterns": self.patterns,
            "retrievals": self.retrievals,
            "seconds": round(self.seconds, 3),
            "findings": [finding.to_plain() for finding in self.findings],
        }


def checkpoint_findings(keys: KeyList, checkpoints: Sequence[SignedCheckpoint]) -> list[Finding]:
    """Checkpoints that are not of this log, not signed by a published key, or that fork it (two of one
    size with different roots: a split view)."""
    findings = [
        Finding(kind="checkpoint", record_id=signed.source or signed.file_name, check="signature", detail=problem)
        for signed in checkpoints
        if (problem := signed.problem(keys)) is not None
    ]
    by_size: dict[int, SignedCheckpoint] = {}
    for signed in checkpoints:
        earlier = by_size.setdefault(signed.checkpoint.tree_size, signed)
        if earlier.checkpoint.root_hash != signed.checkpoint.root_hash:
            findings.append(
                Finding(
                    kind="checkpoint",
                    record_id=signed.source or signed.file_name,
                    check="split view",
                    detail=(
                        f"size {signed.checkpoint.tree_size} has root {signed.checkpoint.root_hash[:16]}..., but "
                        f"{earlier.source or earlier.file_name} has root {earlier.checkpoint.root_hash[:16]}... "
                        "for the same size: two different logs were signed"
                    ),
                )
            )
    return findings


def failed_signatures(
    batch: Sequence[tuple[str, uuid.UUID, int, PublicKey, bytes, bytes]],
) -> list[tuple[str, uuid.UUID, int, str]]:
    """The entries of `batch` (kind, id, position, key, signature, message) whose signature does not
    verify, as (kind, id, position, key id). Module-level, so a process pool can run it."""
    return [
        (kind, identifier, position, key.key_id)
        for kind, identifier, position, key, signature, message in batch
        if not key.verifies(signature, message)
    ]


def late_items(
    decision_time: datetime, items: Iterable[tuple[str, uuid.UUID, datetime | None]]
) -> list[tuple[str, uuid.UUID, datetime | None]]:
    """The items (kind, id, when their outcome became known; None: unknown) not known by `decision_time`."""
    return [(kind, item, known) for kind, item, known in items if known is None or known > decision_time]
