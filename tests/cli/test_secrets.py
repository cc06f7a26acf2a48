"""Secrets never leave their place (issue 14, point 7): a database password in the URL and the signing
key appear in no log line, error, printed line, metrics file or span of a night's work, a failed
connection included."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from models.engine import dispose_engines
from tests.postgresql import fresh_database
from tests.tracing_support import recording_spans

PASSWORD = "Zq8-secret-pass-4f1c9e"
#: A role of its own per test process (roles outlive the databases of a server).
ROLE = f"trader_{os.getpid()}"


@pytest.fixture
def secret_url(postgresql_server: Any) -> Iterator[str]:
    """A database of a role whose password is `PASSWORD`, named in the URL as a user would."""
    with fresh_database(postgresql_server) as superuser_url:
        database = make_url(superuser_url).database
        postgresql_server.psql(
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'; ALTER DATABASE {database} OWNER TO {ROLE};"
        )
        engine = create_engine(superuser_url)
        with engine.begin() as connection:  # the extension needs a superuser; a real server's DBA makes it
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            connection.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {ROLE}")
        engine.dispose()
        secret = make_url(superuser_url).set(username=ROLE, password=PASSWORD)
        yield secret.render_as_string(hide_password=False)
        dispose_engines()
    postgresql_server.psql(f"DROP ROLE IF EXISTS {ROLE};")


def everything_written(tmp_path: Path, caplog: pytest.LogCaptureFixture, outputs: list[str], spans: Any) -> str:
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    texts += outputs
    texts += [
        path.read_text(errors="replace")
        for path in tmp_path.rglob("*")
        if path.is_file() and path.stat().st_size < 10_000_000
    ]
    for span in spans.get_finished_spans():
        texts.append(span.name)
        texts.extend(f"{key}={value}" for key, value in (span.attributes or {}).items())
        texts.extend(str(event.attributes) for event in span.events)
    return "\n".join(texts)


def test_a_nights_logs_errors_output_metrics_and_spans_hold_neither_password_nor_signing_key(
    secret_url: str, sample_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars
    from flows.maintain_index import maintain_index
    from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE
    from neuraltrade_cli import app
    from tasks.metrics import METRICS_ENVIRONMENT_VARIABLE

    spans = recording_spans()
    monkeypatch.setenv(METRICS_ENVIRONMENT_VARIABLE, str(tmp_path / "metrics" / "neuraltrade.prom"))
    monkeypatch.setenv("NEURALTRADE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    runner = CliRunner()
    outputs = []
    with caplog.at_level(logging.DEBUG):
        ingest_bars.fn(paths=[str(sample_csv)], database_url=secret_url)
        embed_observations.fn(database_url=secret_url)
        maintain_index.fn(database_url=secret_url)
        for arguments in (
            ["status", "--db", secret_url],
            ["verify", "--db", secret_url],
            ["memory", "stats", "--db", secret_url],
            ["backup", str(tmp_path / "backup"), "--db", secret_url],
            # A database that does not exist: the error names the URL, without its password.
            ["status", "--db", secret_url.replace(make_url(secret_url).database or "", "no_such_database")],
        ):
            result = runner.invoke(app, arguments)
            outputs.append(result.output)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                outputs.append(repr(result.exception))
    written = everything_written(tmp_path, caplog, outputs, spans)
    key_lines = [line for line in Path(os.environ[KEY_ENVIRONMENT_VARIABLE]).read_text().splitlines() if len(line) > 20]

    assert "no_such_database" in written and "***" in written  # the failed connection was reported
    assert len(written) > 10_000 and spans.get_finished_spans()
    assert PASSWORD not in written
    assert key_lines and not [line for line in key_lines if line in written]
