"""`neuraltrade init`, `verify` and `keys`: a key made once and never shown, verification offline, rotation.

One small real database per test: the first 120 NVDA bars ingested and embedded, in process.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlean
from typer.testing import CliRunner

from models.engine import dispose_engines
from neuraltrade.provenance.keys import KEY_ENVIRONMENT_VARIABLE
from neuraltrade_cli import app
from tasks.provenance import seal_log
from tests.conftest import DAILY_DATA

runner = CliRunner()


@pytest.fixture
def key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "operator" / "signing.key"
    monkeypatch.setenv(KEY_ENVIRONMENT_VARIABLE, str(path))
    yield path
    dispose_engines()


def _ingest(url: str, folder: Path) -> None:
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars

    sample = folder / "NVDA.csv"
    sample.write_text("".join((DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]))
    ingest_bars.fn(paths=[str(sample)], database_url=url)
    embed_observations.fn(database_url=url)


def test_init_makes_a_key_only_its_owner_reads_and_never_prints_it(tmp_path: Path, key_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/n.db"

    first = runner.invoke(app, ["init", "--db", url])
    again = runner.invoke(app, ["init", "--db", url])

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    secret = key_path.read_text().splitlines()[1]
    assert secret not in first.output and "PRIVATE KEY" not in first.output
    assert f"created at {key_path}" in first.output and f"found at {key_path}" in again.output
    assert (tmp_path / "checkpoints" / "keys.json").is_file()
    connection = sqlean.connect(str(tmp_path / "n.db"))
    assert secret not in "".join(str(row) for row in connection.execute("SELECT * FROM provenance_records"))
    connection.close()


def test_writes_without_a_key_name_the_path_and_the_command(tmp_path: Path, key_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/n.db"
    from models.migrations import upgrade_database

    upgrade_database(url)
    sample = tmp_path / "NVDA.csv"
    sample.write_text("".join((DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]))

    assert runner.invoke(app, ["ingest", str(sample), "--db", url]).exit_code == 0  # bars are not signed
    result = runner.invoke(app, ["embed", "--db", url])  # observations are

    assert result.exit_code == 1 and f"no signing key at {key_path}" in result.output
    assert "neuraltrade init" in result.output


def test_verify_passes_on_an_untouched_database_and_names_the_first_tampered_record(
    tmp_path: Path, key_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/n.db"
    assert runner.invoke(app, ["init", "--db", url]).exit_code == 0
    _ingest(url, tmp_path)
    seal_log.fn(url)
    dispose_engines()

    passed = runner.invoke(app, ["verify", "--db", url, "--json"])

    report = json.loads(passed.stdout)
    assert passed.exit_code == 0 and report["ok"] and report["records"] == report["log_size"] > 120
    assert report["checkpoint_size"] == report["log_size"] and report["findings"] == []
    connection = sqlean.connect(str(tmp_path / "n.db"))
    [(observation,)] = connection.execute("SELECT id FROM observations ORDER BY timestamp LIMIT 1 OFFSET 7")
    connection.execute("UPDATE observations SET price = price + 1 WHERE id = ?", (observation,))
    connection.commit()
    connection.close()
    dispose_engines()

    failed = runner.invoke(app, ["verify", "--db", url])
    as_json = runner.invoke(app, ["verify", "--db", url, "--json"])

    named = f"observation {uuid.UUID(hex=observation)}"
    assert failed.exit_code == 1 and f"FAILED {named}: content" in failed.output
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["findings"][0]["check"] == "content"


def test_a_rotated_key_signs_from_then_on_and_the_old_signatures_still_verify(tmp_path: Path, key_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/n.db"
    assert runner.invoke(app, ["init", "--db", url]).exit_code == 0
    old = json.loads(runner.invoke(app, ["keys", "list", "--db", url, "--json"]).stdout)["keys"]

    rotated = runner.invoke(app, ["keys", "rotate", "--db", url])
    _ingest(url, tmp_path)  # signed by the new key
    seal_log.fn(url)
    dispose_engines()

    keys = json.loads(runner.invoke(app, ["keys", "list", "--db", url, "--json"]).stdout)["keys"]
    assert rotated.exit_code == 0 and f"{old[0]['key_id']} -> {keys[1]['key_id']}" in rotated.output
    assert [key["key_id"] for key in keys] == [old[0]["key_id"], keys[1]["key_id"]]
    assert keys[0]["retired_at"] is not None and keys[1]["retired_at"] is None
    connection = sqlean.connect(str(tmp_path / "n.db"))
    signers = dict(connection.execute("SELECT key_id, count(*) FROM log_entries GROUP BY key_id").fetchall())
    connection.close()
    # The old key signed itself in and then the new key's introduction; the new key everything after.
    assert signers[old[0]["key_id"]] == 2 and signers[keys[1]["key_id"]] == 120  # 120 observations
    verified = runner.invoke(app, ["verify", "--db", url])
    assert verified.exit_code == 0 and verified.output.startswith("verified "), verified.output


def test_verify_refuses_a_run_id_that_is_not_a_uuid(tmp_path: Path, key_path: Path) -> None:
    result = runner.invoke(app, ["verify", "not-a-run", "--db", f"sqlite:///{tmp_path}/n.db"])

    assert result.exit_code == 1 and "run id 'not-a-run' is not a UUID" in result.output
