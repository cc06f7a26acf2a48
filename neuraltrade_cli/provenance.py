"""`neuraltrade verify` and `neuraltrade keys`: check the provenance log offline, list and rotate signing keys.

`verify` reads the database only (never changes it) with nothing but the published key list and the
checkpoints. It prints one line and exits 0 when everything verifies, or prints the first failing record
(kind, id, what failed) and exits 1; with ``--json``, one JSON object either way.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from neuraltrade_cli.app import DatabaseOption, _Failure, _reporting_failures, _run, app, console, errors, safe

CheckpointDirOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint-dir",
        metavar="DIR",
        help="Where checkpoints and keys.json live (default: $NEURALTRADE_CHECKPOINT_DIR, else checkpoints/ "
        "beside the database).",
    ),
]

keys_app = typer.Typer(name="keys", help="The signing keys of the provenance log.", no_args_is_help=True)
app.add_typer(keys_app)

#: Findings printed before "... and N more".
_SHOWN_FINDINGS = 10


@app.command()
@_reporting_failures
def verify(
    run_id: Annotated[
        str | None, typer.Argument(metavar="[RUN_ID]", help="Report only on this backtest run's records.")
    ] = None,
    db: DatabaseOption = None,
    checkpoint_dir: CheckpointDirOption = None,
    keys: Annotated[
        str | None, typer.Option("--keys", metavar="FILE", help="The public key list (default: keys.json there).")
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", metavar="FILE", help="The checkpoint you trust (default: the newest there)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify every signature, link, log entry and checkpoint of the database, offline."""
    import uuid

    from models.engine import resolve_database_url
    from tasks.provenance import verify_with

    if run_id is not None:
        try:
            uuid.UUID(run_id)
        except ValueError:
            raise _Failure(f"run id {run_id!r} is not a UUID (see `neuraltrade runs`)") from None
    url = _run(lambda: resolve_database_url(db))
    report = _run(
        lambda: verify_with(url, directory=checkpoint_dir, keys_file=keys, checkpoint_file=checkpoint, run_id=run_id)
    )
    if as_json:
        typer.echo(json.dumps(report.to_plain()))
    elif report.ok:
        console.print(report.summary(), highlight=False, soft_wrap=True)
    else:
        errors.print(f"[bold red]{safe(report.summary())}[/]", highlight=False, soft_wrap=True)
        for finding in report.findings[1:_SHOWN_FINDINGS]:
            errors.print(f"  {safe(finding.sentence())}", highlight=False, soft_wrap=True)
        if len(report.findings) > _SHOWN_FINDINGS:
            errors.print(f"  ... and {len(report.findings) - _SHOWN_FINDINGS} more", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)


@keys_app.command("list")
@_reporting_failures
def keys_list(db: DatabaseOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the public keys that signed this log (never a private key)."""
    from models.engine import read_only_url, session_scope
    from models.provenance import log_origin
    from tasks.provenance import key_list

    def read() -> bytes:
        with session_scope(read_only_url(db)) as session:
            return key_list(session, log_origin(session)).to_json()

    published = _run(read)
    if as_json:
        typer.echo(published.decode().strip())
        return
    from neuraltrade.provenance.keys import KeyList

    listed = KeyList.from_json(published)
    table = Table("key id", "introduced", "retired", title=f"keys of {listed.origin}")
    for key in listed.keys:
        table.add_row(
            key.key_id, key.introduced_at.isoformat(), "" if key.retired_at is None else key.retired_at.isoformat()
        )
    console.print(table)


@keys_app.command("rotate")
@_reporting_failures
def keys_rotate(db: DatabaseOption = None, checkpoint_dir: CheckpointDirOption = None) -> None:
    """Make a new signing key; the old one signs its introduction in the log and is retired in keys.json."""
    from models.engine import resolve_database_url
    from tasks.provenance import rotate_key

    url = _run(lambda: resolve_database_url(db))
    rotated = _run(lambda: rotate_key(url, checkpoint_dir))
    console.print(
        f"signing key rotated: {rotated['previous_key_id']} -> {rotated['key_id']} (key file {rotated['path']}); "
        f"public key list {rotated['keys']}",
        highlight=False,
        soft_wrap=True,
    )
