"""Signing keys: the private key file, its key id, and the public key list an auditor verifies with.

The private key is an Ed25519 key (`cryptography`) in a PKCS #8 PEM file created with mode 0600. Its path
is configuration (``$NEURALTRADE_SIGNING_KEY``, else ``$XDG_CONFIG_HOME/neuraltrade/signing.key``); it is
never stored in the database and never printed: `SigningKey`'s repr shows the key id only. A file that
others can read is refused, as ssh refuses one.

A key id is the first 16 hex digits of SHA-256 over ``b"neuraltrade-key/1\\n"`` and the 32 raw public key
bytes. The public key list (`KeyList`, a JSON file published beside the checkpoints) holds every key that
ever signed, with when it was introduced and retired, so that old signatures stay verifiable after a
rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from neuraltrade.canonical import canonical_json, parse_json
from neuraltrade.errors import CheckpointInvalid, SerializationError, SigningKeyInvalid, SigningKeyMissing
from neuraltrade.provenance.files import write_atomically
from neuraltrade.timestamps import format_timestamp, parse_timestamp, require_aware

KEY_ENVIRONMENT_VARIABLE = "NEURALTRADE_SIGNING_KEY"
KEY_LIST_FORMAT = "neuraltrade-keys/1"
_KEY_ID_TAG = b"neuraltrade-key/1\n"
#: Hex digits of a key id (64 bits: enough to tell the keys of one log apart, short enough to read).
KEY_ID_LENGTH = 16


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/neuraltrade/signing.key`` (``~/.config`` when unset): the operator's, not the database's."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "neuraltrade" / "signing.key"


def signing_key_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return `path`, else ``$NEURALTRADE_SIGNING_KEY``, else `default_key_path`."""
    chosen = path or os.environ.get(KEY_ENVIRONMENT_VARIABLE)
    if not chosen:
        return default_key_path()
    try:
        return Path(chosen).expanduser()
    except RuntimeError as error:  # ~name of a user who does not exist
        source = "" if path else f" (${KEY_ENVIRONMENT_VARIABLE})"
        raise SigningKeyInvalid(f"signing key path {str(chosen)!r}{source} names no home folder: {error}") from error


def key_id_of(public_bytes: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(_KEY_ID_TAG + public_bytes).hexdigest()[:KEY_ID_LENGTH]


@dataclass(frozen=True, kw_only=True)
class PublicKey:
    """One published verification key: its id, raw bytes, and the span it signed in."""

    key_id: str
    public_bytes: bytes
    introduced_at: datetime
    retired_at: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.public_bytes) != 32:
            raise CheckpointInvalid(f"public key {self.key_id} has {len(self.public_bytes)} bytes, an Ed25519 key 32")
        if key_id_of(self.public_bytes) != self.key_id:
            raise CheckpointInvalid(f"public key listed as {self.key_id} has the key id {key_id_of(self.public_bytes)}")
        object.__setattr__(self, "introduced_at", require_aware("key introduced_at", self.introduced_at))

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_bytes).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_plain(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_bytes).decode("ascii"),
            "introduced_at": format_timestamp(self.introduced_at),
            "retired_at": None if self.retired_at is None else format_timestamp(self.retired_at),
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> PublicKey:
        try:
            retired = plain.get("retired_at")
            return cls(
                key_id=str(plain["key_id"]),
                public_bytes=base64.b64decode(plain["public_key"], validate=True),
                introduced_at=parse_timestamp(plain["introduced_at"]),
                retired_at=None if retired is None else parse_timestamp(retired),
            )
        except (KeyError, TypeError, ValueError, binascii.Error, SerializationError) as error:
            raise CheckpointInvalid(f"public key entry {dict(plain)!r} is malformed: {error}") from error


class SigningKey:
    """An Ed25519 private key and its key id; signs bytes. Never shows the key itself."""

    __slots__ = ("_private", "key_id", "public_bytes")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_bytes = private.public_key().public_bytes(
            encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
        )
        self.key_id = key_id_of(self.public_bytes)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def public_key(self, introduced_at: datetime) -> PublicKey:
        return PublicKey(key_id=self.key_id, public_bytes=self.public_bytes, introduced_at=introduced_at)

    def pem(self) -> bytes:
        return self._private.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def write_key_file(path: Path, key: SigningKey, *, replace_existing: bool = False) -> None:
    """Write `key` to `path` with mode 0600, created that way (never readable by others, not even briefly).

    Without `replace_existing` an existing file is an error; with it the new file is written beside and
    renamed over the old one, so a crash leaves one whole key file, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_atomically(path, key.pem(), mode=0o600, replace=replace_existing)
    except FileExistsError as error:
        raise SigningKeyInvalid(f"signing key file {path} already exists; not overwritten") from error


_cache: dict[tuple[str, int, int], SigningKey] = {}
_cache_lock = threading.Lock()


def load_signing_key(path: str | os.PathLike[str] | None = None) -> SigningKey:
    """Read the signing key at `path` (default: `signing_key_path`), cached while the file is unchanged.

    Raises
    ------
    SigningKeyMissing
        If there is no file there.
    SigningKeyInvalid
        If the file is readable by group or others, or holds no Ed25519 private key.
    """
    resolved = signing_key_path(path)
    try:
        status = resolved.stat()
    except (FileNotFoundError, NotADirectoryError) as error:
        raise SigningKeyMissing(str(resolved)) from error
    except OSError as error:  # a name too long, a folder that may not be searched
        raise SigningKeyInvalid(f"signing key {resolved} cannot be read: {error.strerror or error}") from error
    if status.st_mode & 0o077:
        raise SigningKeyInvalid(
            f"signing key {resolved} has mode {stat.filemode(status.st_mode)}: others may read it; "
            f"run `chmod 600 {resolved}`"
        )
    marker = (str(resolved), status.st_mtime_ns, status.st_size)
    with _cache_lock:
        cached = _cache.get(marker)
    if cached is not None:
        return cached
    try:
        content = resolved.read_bytes()
    except OSError as error:  # a folder, or a file this user may not read
        raise SigningKeyInvalid(f"signing key {resolved} cannot be read: {error.strerror or error}") from error
    try:
        private = serialization.load_pem_private_key(content, password=None)
    except (ValueError, TypeError) as error:
        raise SigningKeyInvalid(f"signing key {resolved} is not an unencrypted PEM private key: {error}") from error
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyInvalid(f"signing key {resolved} is a {type(private).__name__}, not an Ed25519 key")
    key = SigningKey(private)
    with _cache_lock:
        _cache[marker] = key
    return key


@dataclass(frozen=True, kw_only=True)
class KeyList:
    """The published public keys of one log (`origin`), oldest first."""

    origin: str
    keys: tuple[PublicKey, ...] = ()

    def get(self, key_id: str) -> PublicKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)

    def with_key(self, key: PublicKey, *, retire: str | None = None, at: datetime | None = None) -> KeyList:
        """This list with `key` added (once) and the key `retire` marked retired `at`."""
        keys = [
            replace(known, retired_at=at) if retire is not None and known.key_id == retire else known
            for known in self.keys
        ]
        if all(known.key_id != key.key_id for known in keys):
            keys.append(key)
        return KeyList(origin=self.origin, keys=tuple(keys))

    @classmethod
    def from_introductions(cls, origin: str, introductions: Iterable[Any]) -> KeyList:
        """The list of the keys a log introduced (`neuraltrade.provenance.records.KeyIntroduction`), each
        retired when the next was introduced."""
        ordered = sorted(introductions, key=lambda introduction: introduction.introduced_at)
        keys = cls(origin=origin)
        for introduction, following in zip(ordered, [*ordered[1:], None], strict=True):
            keys = keys.with_key(
                PublicKey(
                    key_id=introduction.key_id,
                    public_bytes=base64.b64decode(introduction.public_key),
                    introduced_at=introduction.introduced_at,
                    retired_at=None if following is None else following.introduced_at,
                )
            )
        return keys

    def to_json(self) -> bytes:
        plain = {"format": KEY_LIST_FORMAT, "origin": self.origin, "keys": [key.to_plain() for key in self.keys]}
        return canonical_json(plain) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "key list") -> KeyList:
        try:
            plain = parse_json(data)
        except SerializationError as error:
            raise CheckpointInvalid(f"{source}: {error}") from error
        if not isinstance(plain, dict) or plain.get("format") != KEY_LIST_FORMAT:
            raise CheckpointInvalid(f"{source} is not a {KEY_LIST_FORMAT} public key list")
        keys: Iterable[Any] = plain.get("keys") or ()
        if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
            raise CheckpointInvalid(f"{source}: keys must be a list of objects, was {keys!r}")
        return cls(origin=str(plain.get("origin")), keys=tuple(PublicKey.from_plain(key) for key in keys))

    @classmethod
    def read(cls, path: Path) -> KeyList:
        try:
            return cls.from_json(path.read_bytes(), source=str(path))
        except FileNotFoundError as error:
            raise CheckpointInvalid(f"no public key list at {path}") from error
