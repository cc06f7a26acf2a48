"""Specification of signing keys: the key file, key ids, the public key list."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from neuraltrade.errors import CheckpointInvalid, SigningKeyInvalid, SigningKeyMissing
from neuraltrade.provenance.keys import (
    KEY_ENVIRONMENT_VARIABLE,
    KeyList,
    SigningKey,
    key_id_of,
    load_signing_key,
    signing_key_path,
    write_key_file,
)

MOMENT = datetime(2026, 12, 2, tzinfo=UTC)


def test_a_key_file_is_created_readable_by_its_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key = SigningKey.generate()

    write_key_file(path, key)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path).key_id == key.key_id
    with pytest.raises(SigningKeyInvalid, match="already exists"):
        write_key_file(path, SigningKey.generate())
    assert load_signing_key(path).key_id == key.key_id


def test_replacing_a_key_file_keeps_its_mode_and_swaps_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_key_file(path, SigningKey.generate())
    new = SigningKey.generate()

    write_key_file(path, new, replace_existing=True)

    assert load_signing_key(path).key_id == new.key_id and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["signing.key"]


def test_a_missing_key_names_its_path_and_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyMissing, match=f"no signing key at {tmp_path / 'absent.key'}.*neuraltrade init"):
        load_signing_key(tmp_path / "absent.key")


def test_a_key_others_can_read_or_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_key_file(path, SigningKey.generate())
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyInvalid, match="others may read it"):
        load_signing_key(path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    os.chmod(garbage, 0o600)
    with pytest.raises(SigningKeyInvalid, match="not an unencrypted PEM private key"):
        load_signing_key(garbage)


def test_the_key_path_is_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(KEY_ENVIRONMENT_VARIABLE, str(tmp_path / "k"))
    assert signing_key_path() == tmp_path / "k"
    monkeypatch.delenv(KEY_ENVIRONMENT_VARIABLE)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert signing_key_path() == tmp_path / "config" / "neuraltrade" / "signing.key"


def test_a_key_never_shows_itself() -> None:
    key = SigningKey.generate()
    pem = key.pem().decode()

    assert repr(key) == f"SigningKey(key_id={key.key_id!r})" and pem.split("\n")[1] not in repr(key)
    assert len(key.key_id) == 16 and key.key_id == key_id_of(key.public_bytes)


def test_a_public_key_verifies_its_own_signatures_only() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    public = key.public_key(MOMENT)
    signature = key.sign(b"message")

    assert public.verifies(signature, b"message")
    assert not public.verifies(signature, b"messagE")
    assert not other.public_key(MOMENT).verifies(signature, b"message")
    assert not public.verifies(b"\x00" * 64, b"message")


def test_the_key_list_round_trips_and_retires_a_key_without_forgetting_it() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    listed = KeyList(origin="neuraltrade/test").with_key(old.public_key(MOMENT))
    later = MOMENT + timedelta(days=30)

    rotated = listed.with_key(new.public_key(later), retire=old.key_id, at=later)

    read = KeyList.from_json(rotated.to_json())
    assert read == rotated and [key.key_id for key in read.keys] == [old.key_id, new.key_id]
    assert read.get(old.key_id) is not None and read.get(old.key_id).retired_at == later  # type: ignore[union-attr]
    assert read.get("0" * 16) is None


def test_a_listed_key_whose_id_does_not_match_its_bytes_is_refused() -> None:
    key = SigningKey.generate()
    plain = KeyList(origin="o").with_key(key.public_key(MOMENT)).to_json().replace(key.key_id.encode(), b"0" * 16)

    with pytest.raises(CheckpointInvalid, match="has the key id"):
        KeyList.from_json(plain)
    with pytest.raises(CheckpointInvalid, match="not a neuraltrade-keys/1"):
        KeyList.from_json(b'{"format": "other"}')
