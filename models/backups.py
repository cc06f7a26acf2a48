"""Backups and restores of a database with the checkpoints that prove its log, as one folder.

A backup folder holds the database (SQLite: a copy made with SQLite's online backup API, consistent while
writers go on; PostgreSQL: a ``pg_dump`` archive in its custom format), a copy of the checkpoint folder
(the signed checkpoints and ``keys.json``, which no database copy restores), and ``manifest.json``: what
was backed up, when, at which schema revision, each table's row count, and the SHA-256 of every file.
A restore checks every digest first, refuses a target that already holds tables, and checks the row
counts after. HNSW index files are not backed up: they are rebuilt from the database.

PostgreSQL's tools come from ``$NEURALTRADE_PG_BIN`` when set, else the ``PATH``; the password goes to
them in ``PGPASSWORD``, never on their command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from models import run_summaries
from models.engine import database_file, display_url, dispose_engines, get_engine, session_scope
from models.migrations import current_revision
from neuraltrade.canonical import format_timestamp
from neuraltrade.errors import StorageError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PG_BIN_VARIABLE = "NEURALTRADE_PG_BIN"
_FILES = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}


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
    kind = make_url(database_url).get_backend_name()
    target = folder / _FILES[kind]
    with session_scope(database_url) as session:
        counts = run_summaries.table_counts(session)
    if kind == "sqlite":
        _sqlite_copy(_sqlite_path(database_url), target)
    else:
        _run_tool("pg_dump", ["--format=custom", "--no-owner", f"--file={target}"], database_url)
    if checkpoints is not None and checkpoints.is_dir():
        shutil.copytree(checkpoints, folder / "checkpoints")
    manifest = {
        "format": FORMAT_VERSION,
        "database": kind,
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
    kind = make_url(database_url).get_backend_name()
    if kind != manifest["database"]:
        raise StorageError(f"backup {str(folder)!r} is of a {manifest['database']} database, not {kind}")
    with get_engine(database_url).connect() as connection:
        tables = inspect(connection).get_table_names()
    if tables:
        raise StorageError(
            f"database {display_url(database_url)} already holds {len(tables)} tables: restore into an empty one"
        )
    dispose_engines()
    source = folder / _FILES[kind]
    if kind == "sqlite":
        _sqlite_copy(source, _sqlite_path(database_url))
    else:
        name = make_url(database_url).database or ""
        _run_tool("pg_restore", ["--no-owner", "--exit-on-error", f"--dbname={name}", str(source)], database_url)
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
            found[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _sqlite_path(database_url: str) -> Path:
    path = database_file(database_url)
    if path is None:
        raise StorageError(f"database {display_url(database_url)} is not a SQLite file")
    return path


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy with SQLite's online backup API: a consistent copy even while another process writes."""
    import sqlean

    target.parent.mkdir(parents=True, exist_ok=True)
    reader = sqlean.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlean.connect(str(target))
    try:
        reader.backup(writer)
        checked = writer.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        writer.close()
        reader.close()
    if checked != "ok":
        raise StorageError(f"the copy of {str(source)!r} fails SQLite's integrity check: {checked}")


def _run_tool(name: str, arguments: list[str], database_url: str) -> None:
    folder = os.environ.get(PG_BIN_VARIABLE)
    program = str(Path(folder) / name) if folder else shutil.which(name)
    if program is None or not Path(program).exists():
        raise StorageError(f"{name} is not installed (or set {PG_BIN_VARIABLE} to the folder that holds it)")
    url = make_url(database_url)
    environment = {**os.environ, "PGDATABASE": url.database or ""}
    for variable, value in (("PGUSER", url.username), ("PGPASSWORD", url.password), ("PGPORT", url.port)):
        if value is not None:
            environment[variable] = str(value)
    host = url.host or url.query.get("host")
    if host:
        environment["PGHOST"] = str(host if isinstance(host, str) else host[0])
    finished = subprocess.run([program, *arguments], env=environment, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        raise StorageError(f"{name} of {display_url(database_url)} failed: {last}")
