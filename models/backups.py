"""Backups and restores of a database with the checkpoints that prove its log, as one folder.

A backup folder holds the database (SQLite: a copy made with SQLite's online backup API, consistent while
writers go on; PostgreSQL: a ``pg_dump`` archive in its custom format), a copy of the checkpoint folder
(the signed checkpoints and ``keys.json``, which no database copy restores), and ``manifest.json``: what
was backed up, when, at which schema revision, each table's row count, and the SHA-256 of every file.
A restore checks every digest first, refuses a target that already holds tables, and checks the row
counts after. HNSW index files are not backed up: they are rebuilt from the database.

Each dialect copies its own kind (`DialectComponents.dump` and `load`): PostgreSQL's tools come from
``$NEURALTRADE_PG_BIN`` when set, else the ``PATH``, and the password goes to them in ``PGPASSWORD``,
never on their command line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect

from models import run_summaries
from models.dialects import dialect_for
from models.engine import display_url, dispose_engines, get_engine, session_scope
from models.migrations import current_revision
from neuraltrade.canonical import format_timestamp
from neuraltrade.errors import StorageError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def back_up(database_url: str, folder: Path, checkpoints: Path | None, now: datetime) -> dict[str, Any]:
    """Back up `database_url` and the checkpoint folder `checkpoints` (if it exists) into the new folder
    `folder`; return the manifest.

    Raises
    ------
    StorageError
        If `folder` exists and is not empty, the database has no schema, or the copy fails.
    """
    if folder.exists() and any(folder.iterdir()):
        raise StorageError(f"backup folder {str(folder)!r} is not empty: choose a new one")
    revision = current_revision(database_url)
    if revision is None:
        raise StorageError(f"database {display_url(database_url)} has no schema: nothing to back up")
    folder.mkdir(parents=True, exist_ok=True)
    dialect = dialect_for(database_url)
    copied = dialect.dump(database_url, folder / dialect.backup_file)
    with session_scope(copied) as session:
        counts = run_summaries.table_counts(session)
    dispose_engines()  # no engine keeps the copy open
    if checkpoints is not None and checkpoints.is_dir():
        shutil.copytree(checkpoints, folder / "checkpoints")
    manifest = {
        "format": FORMAT_VERSION,
        "database": dialect.name,
        "source": display_url(database_url),
        "backed_up_at": format_timestamp(now),
        "schema_revision": revision,
        "tables": counts,
        "files": _digests(folder),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def restore(folder: Path, database_url: str, checkpoints: Path | None) -> dict[str, Any]:
    """Restore the backup in `folder` into `database_url` (an empty database of the backup's kind) and
    its checkpoints into `checkpoints`; return the manifest.

    Raises
    ------
    StorageError
        If the manifest is missing or a file does not match its digest, the kinds differ, the target
        already holds tables, or the restored row counts differ from the manifest's.
    """
    manifest = _manifest(folder)
    dialect = dialect_for(database_url)
    if dialect.name != manifest["database"]:
        raise StorageError(f"backup {str(folder)!r} is of a {manifest['database']} database, not {dialect.name}")
    with get_engine(database_url).connect() as connection:
        tables = inspect(connection).get_table_names()
    if tables:
        raise StorageError(
            f"database {display_url(database_url)} already holds {len(tables)} tables: restore into an empty one"
        )
    dispose_engines()
    dialect.load(folder / dialect.backup_file, database_url)
    with session_scope(database_url) as session:
        counts = run_summaries.table_counts(session)
    if counts != manifest["tables"]:
        stored = manifest["tables"]
        differing = sorted(name for name in set(counts) | set(stored) if counts.get(name) != stored.get(name))
        raise StorageError(f"restored tables differ from the backup's manifest: {', '.join(differing)}")
    saved = folder / "checkpoints"
    if checkpoints is not None and saved.is_dir():
        shutil.copytree(saved, checkpoints, dirs_exist_ok=True)
    return manifest


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StorageError(f"{str(path)!r} is not a backup manifest: {error}") from error
    found = _digests(folder)
    for name, digest in manifest.get("files", {}).items():
        if found.get(name) != digest:
            raise StorageError(f"backup file {name!r} in {str(folder)!r} is missing or changed since the backup")
    return manifest


def _digests(folder: Path) -> dict[str, str]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            with path.open("rb") as handle:  # in blocks: a database copy may not fit in memory
                found[path.relative_to(folder).as_posix()] = hashlib.file_digest(handle, "sha256").hexdigest()
    return found
