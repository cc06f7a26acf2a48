"""Signed checkpoints: the log's size and root at the end of a night, kept outside the database.

A checkpoint is a record (kind "checkpoint"): the log's origin, its tree size and root hash, the flow run
that wrote it, the code version, when, and the key id that signs it. Its file is the canonical JSON of
``{"format", "checkpoint", "signature"}``, the signature covering ``b"neuraltrade-checkpoint/1\\n"`` and the
checkpoint's canonical bytes. Files are named ``checkpoint-<size>-<first 16 hex of root>.json`` in the
checkpoint directory (default: ``checkpoints/`` beside the database), where the public key list
(``keys.json``) is published too. Whoever keeps a copy of one checkpoint can later prove that the log it
is shown still extends the log that checkpoint saw.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from neuraltrade.canonical import canonical_json, parse_json, parse_timestamp
from neuraltrade.errors import CheckpointDirectoryTaken, CheckpointInvalid, SerializationError
from neuraltrade.provenance.files import write_atomically
from neuraltrade.provenance.keys import KeyList, SigningKey
from neuraltrade.records import Record
from neuraltrade.timestamps import require_aware

CHECKPOINT_TAG = b"neuraltrade-checkpoint/1\n"
CHECKPOINT_FORMAT = "neuraltrade-checkpoint/1"
KEY_LIST_NAME = "keys.json"


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Record):
    """The log `origin` had `tree_size` entries with root `root_hash` (hex) when `flow_run_id` ended."""

    KIND = "checkpoint"
    SCHEMA_VERSION = 1

    origin: str
    tree_size: int
    root_hash: str
    flow_run_id: str | None
    code_version: str
    created_at: datetime
    key_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", require_aware("checkpoint created_at", self.created_at))
        if self.tree_size < 0 or len(self.root_hash) != 64:
            raise CheckpointInvalid(f"checkpoint of size {self.tree_size} has a malformed root {self.root_hash!r}")

    @classmethod
    def from_fields(cls, plain: dict[str, Any]) -> Checkpoint:
        return cls(**{**plain, "created_at": parse_timestamp(plain["created_at"])})

    def message(self) -> bytes:
        return CHECKPOINT_TAG + self.canonical_bytes()


@dataclass(frozen=True, kw_only=True)
class SignedCheckpoint:
    """A checkpoint, its signature, and the file it was read from (if any)."""

    checkpoint: Checkpoint
    signature: bytes
    source: str = ""

    @classmethod
    def sign(cls, checkpoint: Checkpoint, key: SigningKey) -> SignedCheckpoint:
        if checkpoint.key_id != key.key_id:
            raise CheckpointInvalid(f"checkpoint names key {checkpoint.key_id}, signed with {key.key_id}")
        return cls(checkpoint=checkpoint, signature=key.sign(checkpoint.message()))

    def problem(self, keys: KeyList) -> str | None:
        """Why this checkpoint cannot be trusted under `keys` (another log, unknown key, bad signature), or None."""
        checkpoint = self.checkpoint
        if checkpoint.origin != keys.origin:
            return f"is of log {checkpoint.origin!r}, not {keys.origin!r}"
        key = keys.get(checkpoint.key_id)
        if key is None:
            return f"is signed by key {checkpoint.key_id}, which is not in the public key list"
        if not key.verifies(self.signature, checkpoint.message()):
            return f"has a signature that does not verify under key {checkpoint.key_id}"
        return None

    def to_json(self) -> bytes:
        plain = {
            "format": CHECKPOINT_FORMAT,
            "checkpoint": self.checkpoint.canonical_plain(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return canonical_json(plain) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "checkpoint") -> SignedCheckpoint:
        try:
            plain = parse_json(data)
            if not isinstance(plain, dict) or plain.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointInvalid(f"{source} is not a {CHECKPOINT_FORMAT} file")
            checkpoint = Checkpoint.from_canonical(canonical_json(plain["checkpoint"]))
            signature = base64.b64decode(plain["signature"], validate=True)
        except (KeyError, TypeError, binascii.Error, SerializationError) as error:
            raise CheckpointInvalid(f"{source} is malformed: {error}") from error
        return cls(checkpoint=checkpoint, signature=signature, source=source)

    @property
    def file_name(self) -> str:
        return f"checkpoint-{self.checkpoint.tree_size:012d}-{self.checkpoint.root_hash[:16]}.json"


def claim_directory(directory: Path, origin: str) -> None:
    """Check that `directory` may hold the checkpoints of log `origin`: it holds none of another log's.

    Two databases in one folder share its default ``checkpoints/``, and so does a database made again
    where one was deleted. Sealing either log there would overwrite the other's ``keys.json`` and mix
    their checkpoints, after which neither verifies; the offline proof of the older one would be lost.

    Raises
    ------
    CheckpointDirectoryTaken
        If a checkpoint or the key list in `directory` is of another log (nothing is written).
    CheckpointInvalid
        If a file there is not a checkpoint or key list at all.
    """
    others = {signed.checkpoint.origin: signed.source for signed in read_checkpoints(directory)}
    key_file = directory / KEY_LIST_NAME
    if key_file.is_file():
        others[KeyList.from_json(key_file.read_bytes(), source=str(key_file)).origin] = str(key_file)
    others.pop(origin, None)
    if others:
        other, source = sorted(others.items())[0]
        raise CheckpointDirectoryTaken(
            f"checkpoint directory {directory} holds {source}, of log {other!r}, not of this database's log "
            f"{origin!r} (another database in the same folder, or one that was there before); nothing was "
            "written. Move that folder away, or name another with --checkpoint-dir or NEURALTRADE_CHECKPOINT_DIR"
        )


def write_checkpoint(directory: Path, signed: SignedCheckpoint) -> Path:
    """Write `signed` into `directory` (created if needed) atomically; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / signed.file_name
    write_atomically(path, signed.to_json())
    return path


def write_key_list(directory: Path, keys: KeyList) -> Path:
    """Publish `keys` as ``keys.json`` in `directory`; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_LIST_NAME
    write_atomically(path, keys.to_json())
    return path


def read_checkpoints(directory: Path) -> list[SignedCheckpoint]:
    """Every checkpoint file in `directory`, smallest tree first (none if there is no such directory)."""
    if not directory.is_dir():
        return []
    found = [
        SignedCheckpoint.from_json(path.read_bytes(), source=str(path))
        for path in sorted(directory.glob("checkpoint-*.json"))
    ]
    return sorted(found, key=lambda signed: (signed.checkpoint.tree_size, signed.checkpoint.created_at))


def read_checkpoint(path: Path) -> SignedCheckpoint:
    try:
        return SignedCheckpoint.from_json(path.read_bytes(), source=str(path))
    except FileNotFoundError as error:
        raise CheckpointInvalid(f"no checkpoint at {path}") from error
