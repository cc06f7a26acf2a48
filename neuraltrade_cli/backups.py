"""`neuraltrade backup` and `neuraltrade restore`: the database and its checkpoints, as one folder
(`models.backups`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuraltrade_cli.app import DatabaseOption, _reporting_failures, _run, app, console
from neuraltrade_cli.provenance import CheckpointDirOption

FolderArgument = Annotated[Path, typer.Argument(metavar="FOLDER", help="The backup folder.")]


@app.command()
@_reporting_failures
def backup(folder: FolderArgument, db: DatabaseOption = None, checkpoint_dir: CheckpointDirOption = None) -> None:
    """Back up the database (SQLite's online backup, or pg_dump) and its checkpoints into a new FOLDER."""
    from models.backups import back_up
    from models.engine import resolve_database_url
    from neuraltrade.clock import SystemClock
    from tasks.provenance import checkpoint_directory

    url = _run(lambda: resolve_database_url(db))
    manifest = _run(lambda: back_up(url, folder, checkpoint_directory(url, checkpoint_dir), SystemClock().now()))
    rows = sum(manifest["tables"].values())
    console.print(
        f"backed up {manifest['source']} (schema {manifest['schema_revision']}, {rows:,} rows, "
        f"{len(manifest['files'])} files) to {folder}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@_reporting_failures
def restore(folder: FolderArgument, db: DatabaseOption = None, checkpoint_dir: CheckpointDirOption = None) -> None:
    """Restore a backup FOLDER into an empty database and its checkpoint folder; the row counts are checked."""
    from models.backups import restore as restore_backup
    from models.engine import display_url, resolve_database_url
    from tasks.provenance import checkpoint_directory

    url = _run(lambda: resolve_database_url(db))
    manifest = _run(lambda: restore_backup(folder, url, checkpoint_directory(url, checkpoint_dir)))
    console.print(
        f"restored the backup of {manifest['backed_up_at']} (schema {manifest['schema_revision']}) into "
        f"{display_url(url)}; run `neuraltrade verify` to check its log",
        highlight=False,
        soft_wrap=True,
    )
