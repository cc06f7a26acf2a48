"""Provenance through the tasks: a corrected bar retracts the observations after it, and the log still verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.engine import dispose_engines, get_engine
from neuraltrade.errors import CheckpointDirectoryTaken
from tasks.provenance import adopt_records, seal_log, verify_with
from tests.conftest import DAILY_DATA


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def test_a_corrected_bar_retracts_the_observations_after_it_and_the_log_still_verifies(
    database_url: str, tmp_path: Path
) -> None:
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars

    lines = (DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:121]
    ingest_bars.fn(paths=[str(_write(tmp_path / "NVDA.csv", lines))], database_url=database_url)
    embed_observations.fn(database_url=database_url)
    fields = lines[100].rstrip("\n").split(",")
    fields[4] = f"{float(fields[4]) * 1.001:.6f}"  # the close of bar 99, corrected by the vendor
    corrected = [*lines[:100], ",".join(fields) + "\n", *lines[101:]]
    (tmp_path / "corrected").mkdir()

    ingest_bars.fn(paths=[str(_write(tmp_path / "corrected" / "NVDA.csv", corrected))], database_url=database_url)
    embed_observations.fn(database_url=database_url)
    seal_log.fn(database_url)
    dispose_engines()

    report = verify_with(database_url)
    assert report.ok, report.summary()
    with get_engine(database_url).connect() as connection:
        retracted = connection.exec_driver_sql("SELECT count(*) FROM log_entries WHERE kind = 'retraction'").scalar()
        relogged = connection.exec_driver_sql(
            "SELECT count(*) FROM (SELECT record_id FROM log_entries WHERE kind = 'observation' "
            "GROUP BY record_id HAVING count(*) = 2) AS twice"
        ).scalar()
    # Bars 99 to 119 were dropped and embedded again: each retracted once and logged again, as it now is.
    assert retracted == relogged == 21


def test_adopting_signs_what_was_stored_before_provenance_once(database_url: str, tmp_path: Path) -> None:
    from flows.embed_observations import embed_observations
    from flows.ingest_bars import ingest_bars

    lines = (DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:61]
    ingest_bars.fn(paths=[str(_write(tmp_path / "NVDA.csv", lines))], database_url=database_url)
    embed_observations.fn(database_url=database_url)
    with get_engine(database_url).begin() as connection:  # as a database from before provenance
        connection.exec_driver_sql("DELETE FROM log_entries WHERE kind = 'observation'")
    dispose_engines()

    first, again = adopt_records.fn(database_url), adopt_records.fn(database_url)
    seal_log.fn(database_url)

    assert first == {"observation": 60} and again == {}
    assert verify_with(database_url).ok


def test_a_second_database_in_the_folder_cannot_seal_into_the_firsts_checkpoints(tmp_path: Path) -> None:
    from flows.ingest_bars import ingest_bars
    from models.migrations import upgrade_database

    sample = _write(tmp_path / "NVDA.csv", (DAILY_DATA / "NVDA.csv").read_text().splitlines(keepends=True)[:31])
    first, second = f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"
    for url in (first, second):
        upgrade_database(url)
        ingest_bars.fn(paths=[str(sample)], database_url=url)
    seal_log.fn(first)
    folder = tmp_path / "checkpoints"
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    with pytest.raises(
        CheckpointDirectoryTaken, match=r"checkpoints holds .* of log 'neuraltrade/.*nothing was written"
    ):
        seal_log.fn(second)

    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    dispose_engines()
    assert verify_with(first).ok
    elsewhere = seal_log.fn(second, str(tmp_path / "second-checkpoints"))
    assert Path(elsewhere["path"]).parent == tmp_path / "second-checkpoints"
    assert verify_with(second, directory=str(tmp_path / "second-checkpoints")).ok
