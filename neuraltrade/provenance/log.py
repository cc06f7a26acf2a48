"""The append-only log: what a record's signature covers, what a leaf of the Merkle tree holds, the tree.

**Signature.** A record is signed (Ed25519) over its *signed message*: the domain tag
``b"neuraltrade-record/1\\n"``, the canonical JSON of ``[origin, kind, schema_version]`` and a newline, then
the record's canonical bytes (`neuraltrade.records.Record.canonical_bytes`). The tag binds a signature to
one log (its origin), one kind and one schema version: a signature lifted onto another record, another
kind or another log does not verify.

**Leaf.** Entry ``position`` of the log is the canonical JSON of ``{"position", "kind", "schema_version",
"id", "digest", "key_id", "signature", "previous"}``: ``digest`` is the SHA-256 of the signed message,
``signature`` its base64 signature and ``previous`` the hex leaf hash of the entry before (empty for the
first). Its leaf hash is RFC 6962's ``SHA-256(0x00 || entry)``; inner nodes are ``SHA-256(0x01 || left ||
right)``, so an inner node can never pass as a leaf, and a tree of n leaves splits at the largest power of
two below n instead of duplicating an odd last leaf (three leaves and the same three with the last repeated
have different roots). The position and the previous hash make each leaf name its place: two entries
swapped, or one removed and the rest renumbered, break the chain at a named entry.

**Tree.** The hashing, roots and proofs are `pymerkle`'s (7.x, RFC 9162 mode) over a list of leaf hashes
that `models.provenance` keeps in the database.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pymerkle import BaseMerkleTree, InclusionProof, verify_consistency, verify_inclusion
from pymerkle.proof import ConsistencyProof, InvalidProof

from neuraltrade.canonical import canonical_json

RECORD_TAG = b"neuraltrade-record/1\n"
#: Text canonical JSON writes as it is (no escape) in the leaf's fast form.
_PLAIN = re.compile(r"[A-Za-z0-9_:./-]*")
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def signed_message(origin: str, kind: str, schema_version: int, canonical: bytes) -> bytes:
    """The bytes a record's signature covers: the domain tag, then its canonical bytes."""
    return RECORD_TAG + canonical_json([origin, kind, schema_version]) + b"\n" + canonical


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """One entry of the log: which record, the digest of its signed message, who signed it and how."""

    position: int
    kind: str
    schema_version: int
    record_id: uuid.UUID
    digest: bytes
    key_id: str
    signature: bytes

    def leaf_data(self, previous: bytes) -> bytes:
        """The canonical bytes of this entry as the tree's leaf, `previous` being the leaf hash before it."""
        signature = base64.b64encode(self.signature).decode("ascii")
        if _PLAIN.fullmatch(self.kind) and _PLAIN.fullmatch(self.key_id):
            # What canonical_json writes for these keys in sorted order, when no value needs escaping (a
            # property test holds the two equal); written directly because every entry of a verify makes one.
            return (
                f'{{"digest":"{self.digest.hex()}","id":"{self.record_id}","key_id":"{self.key_id}",'
                f'"kind":"{self.kind}","position":{self.position},"previous":"{previous.hex()}",'
                f'"schema_version":{self.schema_version},"signature":"{signature}"}}'
            ).encode("ascii")
        return canonical_json(
            {
                "position": self.position,
                "kind": self.kind,
                "schema_version": self.schema_version,
                "id": str(self.record_id),
                "digest": self.digest.hex(),
                "key_id": self.key_id,
                "signature": signature,
                "previous": previous.hex(),
            }
        )


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962's hash of a leaf: SHA-256 of 0x00 and the leaf's bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def chain_leaf_hashes(entries: Iterable[LogEntry], previous: bytes = b"") -> list[bytes]:
    """The leaf hash of each of `entries` in order, each entry chained to the one before it."""
    hashes = []
    for entry in entries:
        previous = leaf_hash(entry.leaf_data(previous))
        hashes.append(previous)
    return hashes


class LeafTree(BaseMerkleTree):
    """pymerkle's tree over leaf hashes held in a list (loaded from the database): roots and proofs.

    Positions here count from 0, as the log's do; pymerkle's own count from 1.
    """

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.leaves = list(leaves)
        super().__init__(algorithm="sha256")

    def _encode_entry(self, data: bytes) -> bytes:
        return data

    def _store_leaf(self, data: bytes, digest: bytes) -> int:
        del data
        self.leaves.append(digest)
        return len(self.leaves)

    def _get_leaf(self, index: int) -> bytes:
        return self.leaves[index - 1]

    def _get_leaves(self, offset: int, width: int) -> list[bytes]:
        return self.leaves[offset : offset + width]

    def _get_size(self) -> int:
        return len(self.leaves)

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first `size` leaves (all by default); of no leaf, SHA-256 of nothing."""
        return bytes(self.get_root(size))

    def inclusion_proof(self, position: int, size: int | None = None) -> InclusionProof:
        return self.prove_inclusion(position + 1, size)

    def consistency_proof(self, prior_size: int, size: int | None = None) -> ConsistencyProof:
        return self.prove_consistency(prior_size, size)


def proves_inclusion(data: bytes, root: bytes, proof: InclusionProof) -> bool:
    """Whether `proof` shows a leaf holding `data` in the tree of root `root`."""
    return proves_leaf_inclusion(leaf_hash(data), root, proof)


def proves_leaf_inclusion(leaf: bytes, root: bytes, proof: InclusionProof) -> bool:
    """Whether `proof` shows the leaf hash `leaf` in the tree of root `root`."""
    try:
        verify_inclusion(leaf, root, proof)
    except InvalidProof:
        return False
    return True


def proves_consistency(prior_root: bytes, root: bytes, proof: ConsistencyProof) -> bool:
    """Whether `proof` shows the tree of `prior_root` to be a prefix of the tree of `root`."""
    try:
        verify_consistency(prior_root, root, proof)
    except InvalidProof:
        return False
    return True


def proof_size(proof: Any) -> int:
    """Bytes of a proof's hashes (what a client downloads besides the leaf)."""
    return sum(len(node) for node in proof.path)
