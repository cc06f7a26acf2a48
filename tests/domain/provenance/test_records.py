"""Specification of provenance's records and checkpoints: canonical round trips, stable ids, signatures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuraltrade.errors import CheckpointDirectoryTaken, CheckpointInvalid
from neuraltrade.provenance.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    claim_directory,
    read_checkpoint,
    read_checkpoints,
    write_checkpoint,
    write_key_list,
)
from neuraltrade.provenance.keys import KeyList, SigningKey
from neuraltrade.provenance.records import KeyIntroduction, Retraction, Retrieval, RetrievedItem, retrievals_of
from neuraltrade.records import CausalLink, CauseKind, Relation
from neuraltrade.timestamps import to_microseconds

MOMENT = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)


def _checkpoint(key: SigningKey, size: int = 3, root: str = "ab" * 32) -> Checkpoint:
    return Checkpoint(
        origin="neuraltrade/test",
        tree_size=size,
        root_hash=root,
        flow_run_id=None,
        code_version="neuraltrade 0.1.0, engine 1",
        created_at=MOMENT,
        key_id=key.key_id,
    )


@given(st.lists(st.sampled_from([CauseKind.EPISODE, CauseKind.PATTERN, CauseKind.MEMORY_ITEM]), max_size=5))
def test_a_retrieval_round_trips_and_its_id_is_what_it_read(kinds: list[CauseKind]) -> None:
    items = tuple(
        RetrievedItem(cause_kind=kind, cause_id=uuid.UUID(int=number), known_at=MOMENT - timedelta(days=number))
        for number, kind in enumerate(kinds)
    )
    retrieval = Retrieval.of(strategy_id="s", symbol="NVDA", decision_time=MOMENT, horizon_bars=5, items=items)

    assert Retrieval.from_canonical(retrieval.canonical_bytes()) == retrieval
    same = Retrieval.of(strategy_id="s", symbol="NVDA", decision_time=MOMENT, horizon_bars=5, items=items)
    other = Retrieval.of(strategy_id="s", symbol="NVDA", decision_time=MOMENT, horizon_bars=4, items=items)
    assert same.id == retrieval.id != other.id


def test_retrievals_of_bars_skip_the_items_whose_moment_is_unknown_and_the_bars_left_empty() -> None:
    timestamps = [to_microseconds(MOMENT + timedelta(days=day)) for day in range(3)]
    known = CausalLink(cause_id=uuid.UUID(int=1), cause_kind=CauseKind.EPISODE, relation=Relation.RECALLED)
    unknown = CausalLink(cause_id=uuid.UUID(int=2), cause_kind=CauseKind.EPISODE, relation=Relation.RECALLED)

    made = retrievals_of(
        strategy_id="s",
        symbol="NVDA",
        timestamps=timestamps,
        links={2: [known, unknown], 1: [unknown]},
        known_at=lambda link: MOMENT if link is known else None,
    )

    assert [(retrieval.decision_time, len(retrieval.items)) for retrieval in made] == [(MOMENT + timedelta(days=2), 1)]


def test_retractions_and_key_introductions_round_trip() -> None:
    retraction = Retraction.of(
        record_kind="observation",
        record_id=uuid.UUID(int=3),
        position=7,
        digest="00" * 32,
        reason="r",
        retracted_at=MOMENT,
    )
    introduction = KeyIntroduction.of(key_id="ab" * 8, public_key="AAAA", previous_key_id=None, introduced_at=MOMENT)

    assert Retraction.from_canonical(retraction.to_json()) == retraction
    assert retraction.id == Retraction.id_for("observation", uuid.UUID(int=3), 7)
    assert KeyIntroduction.from_canonical(introduction.to_json()) == introduction


def test_a_signed_checkpoint_round_trips_through_its_file_and_verifies(tmp_path: Path) -> None:
    key = SigningKey.generate()
    keys = KeyList(origin="neuraltrade/test").with_key(key.public_key(MOMENT))
    signed = SignedCheckpoint.sign(_checkpoint(key), key)

    path = write_checkpoint(tmp_path, signed)

    read = read_checkpoint(path)
    assert path.name == f"checkpoint-000000000003-{'ab' * 8}.json"
    assert read.checkpoint == signed.checkpoint and read.signature == signed.signature
    assert read.problem(keys) is None and [found.checkpoint for found in read_checkpoints(tmp_path)] == [
        read.checkpoint
    ]


def test_a_checkpoint_of_another_log_another_key_or_another_content_does_not_verify() -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    keys = KeyList(origin="neuraltrade/test").with_key(key.public_key(MOMENT))
    signed = SignedCheckpoint.sign(_checkpoint(key), key)

    moved = SignedCheckpoint(checkpoint=_checkpoint(key, size=4), signature=signed.signature)
    foreign = SignedCheckpoint.sign(_checkpoint(stranger), stranger)

    assert "does not verify" in str(moved.problem(keys))
    assert "not in the public key list" in str(foreign.problem(keys))
    assert "is of log" in str(signed.problem(KeyList(origin="neuraltrade/other", keys=keys.keys)))
    with pytest.raises(CheckpointInvalid, match="malformed"):
        SignedCheckpoint.from_json(b'{"format": "neuraltrade-checkpoint/1"}')


def test_a_checkpoint_directory_is_claimed_only_by_the_log_whose_files_it_holds(tmp_path: Path) -> None:
    key = SigningKey.generate()
    keys = KeyList(origin="neuraltrade/test").with_key(key.public_key(MOMENT))
    claim_directory(tmp_path / "absent", "neuraltrade/test")
    claim_directory(tmp_path, "neuraltrade/other")  # empty
    write_key_list(tmp_path / "keys-only", keys)
    write_checkpoint(tmp_path / "checkpoints", SignedCheckpoint.sign(_checkpoint(key), key))

    claim_directory(tmp_path / "keys-only", "neuraltrade/test")
    claim_directory(tmp_path / "checkpoints", "neuraltrade/test")
    with pytest.raises(CheckpointDirectoryTaken, match=r"keys-only/keys\.json, of log 'neuraltrade/test'"):
        claim_directory(tmp_path / "keys-only", "neuraltrade/other")
    with pytest.raises(CheckpointDirectoryTaken, match=r"checkpoint-000000000003-.*of log 'neuraltrade/test', not"):
        claim_directory(tmp_path / "checkpoints", "neuraltrade/other")
    (tmp_path / "checkpoints" / "keys.json").write_text("{}")
    with pytest.raises(CheckpointInvalid, match=r"keys\.json is not a neuraltrade-keys/1"):
        claim_directory(tmp_path / "checkpoints", "neuraltrade/test")
