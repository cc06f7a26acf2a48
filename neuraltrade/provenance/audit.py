"""What `neuraltrade verify` reports: each failure as a finding that names its record, and the summary.

A finding names the record (kind and id; a checkpoint by its file), the check that failed and why, in
one sentence. Findings come in the order the checks run: the checkpoints, the log entry by entry, the
stored records kind by kind, then links, patterns and retrievals; the first is what a failing run names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from neuraltrade.learning.judge import Verdict
from neuraltrade.learning.patterns import Distillation, Pattern
from neuraltrade.provenance.checkpoint import SignedCheckpoint
from neuraltrade.provenance.keys import KeyList, PublicKey
from neuraltrade.provenance.records import Retrieval
from neuraltrade.records import CauseKind
from neuraltrade.timestamps import from_microseconds


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


def win_counts(members: Iterable[uuid.UUID], verdicts: Mapping[uuid.UUID, Sequence[Verdict]]) -> dict[str, int]:
    """Wins among `members` (episode ids) under each judge (by digest) that judged every one of them."""
    members = list(members)
    digests = {verdict.judge_digest for member in members for verdict in verdicts.get(member, ())}
    counts = {}
    for digest in sorted(digests):
        outcomes = [
            next((verdict.success for verdict in verdicts.get(member, ()) if verdict.judge_digest == digest), None)
            for member in members
        ]
        if None not in outcomes:
            counts[digest] = sum(bool(outcome) for outcome in outcomes)
    return counts


def pattern_findings(
    patterns: Iterable[Pattern],
    distillations: Mapping[uuid.UUID, Distillation],
    verdicts: Mapping[uuid.UUID, Sequence[Verdict]],
    episodes: Mapping[uuid.UUID, datetime],
) -> list[Finding]:
    """Patterns citing an episode not stored (`episodes`) or not cited by their distillation, and patterns
    whose wins and trials do not recompute from the verdicts of their episodes."""
    findings = []
    for pattern in patterns:
        missing = [member for member in pattern.members if member not in episodes]
        if missing:
            detail = (
                f"cites episode {missing[0]}, which is not stored ({len(missing)} of {len(pattern.members)} missing)"
            )
            findings.append(Finding(kind="pattern", record_id=str(pattern.id), check="citation", detail=detail))
            continue
        distillation = distillations.get(pattern.distillation_id)
        if distillation is not None and not set(pattern.members) <= set(distillation.episode_ids):
            detail = "cites episodes its distillation did not cite"
            findings.append(Finding(kind="pattern", record_id=str(pattern.id), check="citation", detail=detail))
        counts = win_counts(pattern.members, verdicts)
        if pattern.trials != len(pattern.members) or pattern.wins not in counts.values():
            found = ", ".join(f"{wins} under judge {digest[:12]}" for digest, wins in counts.items()) or "none"
            detail = (
                f"says {pattern.wins} wins of {pattern.trials}; the verdicts of its {len(pattern.members)} "
                f"episodes give {found}"
            )
            findings.append(Finding(kind="pattern", record_id=str(pattern.id), check="counts", detail=detail))
    return findings


def retrieval_findings(
    retrievals: Iterable[Retrieval],
    episodes: Mapping[uuid.UUID, datetime],
    patterns: Iterable[Pattern],
    distillations: Mapping[uuid.UUID, Distillation],
    observations: Mapping[uuid.UUID, tuple[str, int]],
) -> list[Finding]:
    """Retrievals that returned an item whose outcome was not known by the decision, or that misstate when
    it was. The moments come from the stored items, never from the retrieval: an episode's
    `outcome_known_at`; a pattern's distillation's `as_of`; a market state's (an observation id: symbol and
    epoch microseconds) the bar `horizon_bars` after its own among its symbol's stored observations."""
    made = {
        pattern.id: distillations[pattern.distillation_id].as_of
        for pattern in patterns
        if pattern.distillation_id in distillations
    }
    by_symbol: dict[str, list[int]] = {}
    for symbol, stamp in observations.values():
        by_symbol.setdefault(symbol, []).append(stamp)
    timelines = {symbol: np.sort(np.array(moments, dtype=np.int64)) for symbol, moments in by_symbol.items()}

    def known(kind: CauseKind, item: uuid.UUID, horizon: int) -> datetime | None:
        if kind is CauseKind.EPISODE:
            return episodes.get(item)
        if kind is CauseKind.PATTERN:
            return made.get(item)
        found = observations.get(item)
        if found is None:
            return None
        moments = timelines[found[0]]
        position = int(np.searchsorted(moments, found[1])) + horizon
        return from_microseconds(int(moments[position])) if position < len(moments) else None

    findings = []
    for retrieval in retrievals:
        for item in retrieval.items:
            moment = known(item.cause_kind, item.cause_id, retrieval.horizon_bars)
            if moment is None or moment > retrieval.decision_time:
                when = "never" if moment is None else moment.isoformat()
                detail = (
                    f"returned {item.cause_kind.value} {item.cause_id}, whose outcome was known {when}, after the "
                    f"decision at {retrieval.decision_time.isoformat()}"
                )
            elif moment != item.known_at:
                detail = (
                    f"says {item.cause_kind.value} {item.cause_id} was known {item.known_at.isoformat()}; its "
                    f"record says {moment.isoformat()}"
                )
            else:
                continue
            findings.append(
                Finding(kind="retrieval", record_id=str(retrieval.id), check="point in time", detail=detail)
            )
            break
    return findings
