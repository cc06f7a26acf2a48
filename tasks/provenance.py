"""Provenance tasks: seal the log with a signed checkpoint, verify the database, adopt unlogged records.

The checkpoint directory is `--checkpoint-dir`, else ``$NEURALTRADE_CHECKPOINT_DIR``, else ``checkpoints/``
beside a SQLite database (``data/checkpoints/<name>-<digest of its URL>`` for a server database). The
public key list (``keys.json``) is published there too, built from the key introductions the log holds.
"""

from __future__ import annotations

import os
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import task
from sqlalchemy import select

from models.engine import database_file, read_only_url, server_database_folder, session_scope
from models.provenance import (
    LogEntryRecord,
    introduce_key,
    key_introductions,
    log_origin,
    log_records,
    stored_origin,
)
from models.provenance_audit import verify_database
from models.provenance_sources import records_of, source_kinds, stored_rows
from neuraltrade.backtest.run_spec import ENGINE_VERSION
from neuraltrade.clock import Clock, SystemClock
from neuraltrade.errors import CheckpointInvalid
from neuraltrade.provenance.audit import Report
from neuraltrade.provenance.checkpoint import (
    KEY_LIST_NAME,
    Checkpoint,
    SignedCheckpoint,
    claim_directory,
    read_checkpoint,
    read_checkpoints,
    write_checkpoint,
    write_key_list,
)
from neuraltrade.provenance.keys import (
    KeyList,
    SigningKey,
    load_signing_key,
    signing_key_path,
    write_key_file,
)
from neuraltrade.provenance.log import LeafTree
from tasks.retry import RETRY_DELAYS_SECONDS, is_transient
from tasks.tracing import traced

CHECKPOINT_DIRECTORY_VARIABLE = "NEURALTRADE_CHECKPOINT_DIR"
#: When checkpoints are made (injected: tests set a fixed clock).
clock: Clock = SystemClock()


def checkpoint_directory(database_url: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Where the checkpoints and the public key list of `database_url` go (see the module docstring)."""
    chosen = directory or os.environ.get(CHECKPOINT_DIRECTORY_VARIABLE)
    if chosen:
        return Path(chosen)
    database = database_file(database_url)
    if database is None:
        return Path("data") / "checkpoints" / server_database_folder(database_url)
    return database.parent / "checkpoints"


def code_version() -> str:
    """The package and engine version a checkpoint names."""
    try:
        version = metadata.version("neuraltrade")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"neuraltrade {version}, engine {ENGINE_VERSION}"


def key_list(session: Any, origin: str) -> KeyList:
    """The public key list of the log: every key it introduced, each retired when the next was introduced."""
    return KeyList.from_introductions(origin, key_introductions(session))


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def adopt_records(database_url: str) -> dict[str, int]:
    """Sign and log every stored record the log does not hold yet (records stored before provenance);
    return how many of each kind were adopted."""
    adopted: dict[str, int] = {}
    with session_scope(database_url, write=True) as session:
        log_origin(session)
        for kind in source_kinds():
            count = log_records(session, records_of(kind, list(stored_rows(session, kind))))
            if count:
                adopted[kind] = count
    return adopted


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
def seal_log(database_url: str, directory: str | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
    """Sign a checkpoint of the log as it stands, write it and the public key list to the checkpoint
    directory, and attach it to the flow run as an artifact; return the checkpoint and its file."""
    key = load_signing_key()
    target = checkpoint_directory(database_url, directory)
    with session_scope(database_url, write=True) as session:
        origin = log_origin(session)
        introduce_key(session, key)
        leaves = [
            bytes(leaf) for leaf in session.scalars(select(LogEntryRecord.leaf_hash).order_by(LogEntryRecord.position))
        ]
        keys = key_list(session, origin)
    checkpoint = Checkpoint(
        origin=origin,
        tree_size=len(leaves),
        root_hash=LeafTree(leaves).root().hex(),
        flow_run_id=flow_run_id,
        code_version=code_version(),
        created_at=clock.now(),
        key_id=key.key_id,
    )
    claim_directory(target, origin)
    signed = SignedCheckpoint.sign(checkpoint, key)
    path = write_checkpoint(target, signed)
    write_key_list(target, keys)
    _artifact(signed, path)
    return {
        "path": str(path),
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "key_id": key.key_id,
    }


def _artifact(signed: SignedCheckpoint, path: Path) -> None:
    """The checkpoint as a Markdown artifact of the flow run (nothing outside a flow run)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    checkpoint = signed.checkpoint
    create_markdown_artifact(
        key="provenance-checkpoint",
        markdown=(
            f"# Provenance checkpoint\n\n| field | value |\n|---|---|\n| origin | `{checkpoint.origin}` |\n"
            f"| tree size | {checkpoint.tree_size:,} |\n| root hash | `{checkpoint.root_hash}` |\n"
            f"| key id | `{checkpoint.key_id}` |\n| code | {checkpoint.code_version} |\n| file | `{path}` |\n\n"
            f"```json\n{signed.to_json().decode().strip()}\n```\n"
        ),
        description=f"signed checkpoint of {checkpoint.tree_size:,} log entries",
    )


def verify_with(
    database_url: str,
    *,
    directory: str | None = None,
    keys_file: str | None = None,
    checkpoint_file: str | None = None,
    run_id: str | None = None,
) -> Report:
    """Verify `database_url` (read only) against the public key list and every checkpoint in the
    checkpoint directory, trusting `checkpoint_file` (default: the newest checkpoint there)."""
    target = checkpoint_directory(database_url, directory)
    keys = KeyList.read(Path(keys_file) if keys_file else target / KEY_LIST_NAME)
    checkpoints = read_checkpoints(target)
    trusted = read_checkpoint(Path(checkpoint_file)) if checkpoint_file else None
    with session_scope(read_only_url(database_url)) as session:
        return verify_database(
            session, keys, checkpoints, trusted=trusted, run_id=None if run_id is None else uuid.UUID(run_id)
        )


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=is_transient)
@traced("verify")
def verify_log(database_url: str, directory: str | None = None) -> dict[str, Any]:
    """Verify the database against its checkpoint directory; return the report as plain data."""
    return verify_with(database_url, directory=directory).to_plain()


def publish_keys(database_url: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Write the log's public key list to the checkpoint directory; return its path."""
    with session_scope(database_url) as session:
        origin = stored_origin(session)
        if origin is None:
            raise CheckpointInvalid("the database has no provenance log yet: run `neuraltrade init`")
        keys = key_list(session, origin)
    return write_key_list(checkpoint_directory(database_url, directory), keys)


def initialise(database_url: str, directory: str | None = None) -> dict[str, Any]:
    """Make the signing key if there is none (mode 0600), introduce it to the log, adopt every record
    stored before provenance, and publish the public key list; return what was done."""
    path = signing_key_path()
    created = not path.exists()
    if created:
        write_key_file(path, SigningKey.generate())
    key = load_signing_key(path)
    with session_scope(database_url, write=True) as session:
        introduce_key(session, key)
    adopted = adopt_records.fn(database_url)
    published = publish_keys(database_url, directory)
    return {"key_path": str(path), "key_id": key.key_id, "created": created, "adopted": adopted, "keys": str(published)}


def rotate_key(database_url: str, directory: str | None = None) -> dict[str, Any]:
    """Replace the signing key: the old key signs the new key's introduction in the log, then the new key
    file replaces the old one (written beside it and renamed, so a crash leaves one whole key) and the key
    list is published again with the old key retired."""
    path = signing_key_path()
    previous = load_signing_key(path)
    key = SigningKey.generate()
    with session_scope(database_url, write=True) as session:
        introduce_key(session, key, previous=previous)
    write_key_file(path, key, replace_existing=True)
    published = publish_keys(database_url, directory)
    return {"previous_key_id": previous.key_id, "key_id": key.key_id, "path": str(path), "keys": str(published)}
