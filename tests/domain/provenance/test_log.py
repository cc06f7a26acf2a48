"""Specification of the log's leaves and tree: RFC 6962 hashing, chained leaves, proofs."""

from __future__ import annotations

import base64
import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.provenance.log import (
    LeafTree,
    LogEntry,
    chain_leaf_hashes,
    leaf_hash,
    proof_size,
    proves_consistency,
    proves_inclusion,
)


def _entry(position: int) -> LogEntry:
    return LogEntry(
        position=position,
        kind="fill",
        schema_version=1,
        record_id=uuid.UUID(int=position),
        digest=hashlib.sha256(bytes([position % 256])).digest(),
        key_id="ab" * 8,
        signature=bytes(64),
    )


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written out recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _reference_root(leaves[:split]) + _reference_root(leaves[split:])).digest()


@given(st.integers(min_value=0, max_value=70))
def test_the_root_is_rfc_6962s(size: int) -> None:
    leaves = [leaf_hash(bytes([number])) for number in range(size)]

    assert LeafTree(leaves).root() == _reference_root(leaves)


def test_a_leaf_is_hashed_with_the_leaf_prefix_and_an_empty_log_has_the_empty_hash() -> None:
    assert leaf_hash(b"data") == hashlib.sha256(b"\x00data").digest()
    assert LeafTree().root() == hashlib.sha256(b"").digest()


def test_three_leaves_and_the_same_three_with_the_last_repeated_have_different_roots() -> None:
    three = [leaf_hash(bytes([number])) for number in range(3)]

    assert LeafTree(three).root() != LeafTree([*three, three[-1]]).root()


def test_an_inner_node_presented_as_a_leaf_proves_nothing() -> None:
    leaves = [leaf_hash(bytes([number])) for number in range(4)]
    tree = LeafTree(leaves)
    proof_of_first = tree.inclusion_proof(0)

    assert proves_inclusion(bytes([0]), tree.root(), proof_of_first)
    # The left inner node is H(0x01 || l0 || l1): its preimage l0 || l1 is not a leaf's data.
    assert not proves_inclusion(leaves[0] + leaves[1], tree.root(), proof_of_first)
    assert not proves_inclusion(leaves[0] + leaves[1], tree.root(), LeafTree(leaves[2:]).inclusion_proof(0, 2))


@given(st.integers(min_value=1, max_value=64), st.data())
def test_inclusion_and_consistency_proofs_verify_and_are_logarithmic(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(bytes([number])) for number in range(size)]
    tree = LeafTree(leaves)
    position = data.draw(st.integers(min_value=0, max_value=size - 1))
    prior = data.draw(st.integers(min_value=1, max_value=size))

    inclusion = tree.inclusion_proof(position)
    consistency = tree.consistency_proof(prior)

    assert proves_inclusion(bytes([position]), tree.root(), inclusion)
    assert not proves_inclusion(bytes([(position + 1) % 256]), tree.root(), inclusion)
    assert proves_consistency(tree.root(prior), tree.root(), consistency)
    assert proof_size(inclusion) <= 32 * (size.bit_length() + 1)


def test_each_leaf_names_its_position_and_the_leaf_before_it() -> None:
    entries = [_entry(position) for position in range(4)]
    chained = chain_leaf_hashes(entries)
    swapped = chain_leaf_hashes([entries[0], entries[2], entries[1], entries[3]])

    assert chained[0] == leaf_hash(entries[0].leaf_data(b""))
    assert chained[1] == leaf_hash(entries[1].leaf_data(chained[0]))
    assert swapped[0] == chained[0] and all(a != b for a, b in zip(swapped[1:], chained[1:], strict=True))


@given(
    st.text(max_size=12),
    st.text(max_size=20),
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=1, max_value=9),
    st.binary(max_size=40),
)
def test_the_leafs_fast_form_is_its_canonical_json(
    kind: str, key_id: str, position: int, version: int, previous: bytes
) -> None:
    from neuraltrade.canonical import canonical_json

    entry = LogEntry(
        position=position,
        kind=kind,
        schema_version=version,
        record_id=uuid.UUID(int=position),
        digest=hashlib.sha256(kind.encode()).digest(),
        key_id=key_id,
        signature=hashlib.sha512(key_id.encode()).digest(),
    )
    plain = {
        "position": position,
        "kind": kind,
        "schema_version": version,
        "id": str(entry.record_id),
        "digest": entry.digest.hex(),
        "key_id": key_id,
        "signature": base64.b64encode(entry.signature).decode(),
        "previous": previous.hex(),
    }

    assert entry.leaf_data(previous) == canonical_json(plain)
    assert _entry(position).leaf_data(previous) == canonical_json(
        {
            **plain,
            "kind": "fill",
            "key_id": "ab" * 8,
            "schema_version": 1,
            "digest": _entry(position).digest.hex(),
            "signature": base64.b64encode(bytes(64)).decode(),
        }
    )
