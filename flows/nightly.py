"""Flow `nightly`: the whole night, in order. Later stages join this list as they land."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import run_hooks
from flows.distill_reflexions import distill_reflexions
from flows.embed_observations import embed_observations
from flows.ingest_bars import ingest_bars
from flows.maintain_index import maintain_index
from flows.run_backtests import run_backtests
from flows.verify_provenance import verify_provenance
from models.engine import resolve_database_url


@flow(name="nightly", **run_hooks())
def nightly(
    database_url: str | None = None, paths: list[str] | None = None, checkpoint_dir: str | None = None
) -> dict[str, Any]:
    """Ingest the day's files (default: the shipped sample data), embed what is new, maintain the memory,
    then backtest every strategy (and its version gated by the learning memory) on every symbol, then reflect
    on the closed trades and distil what they taught (`distill_reflexions`); last, seal the night's log
    with a signed checkpoint in `checkpoint_dir` and verify the database (`verify_provenance`).

    Later stages run even when a file was rejected, over what was stored; the night then fails at the
    end with the ingestion error, so a bad file is never silent.
    """
    url = resolve_database_url(database_url)
    ingestion = ingest_bars(paths=paths, database_url=url, return_state=True)
    embedding = embed_observations(database_url=url)
    maintenance = maintain_index(database_url=url, return_state=True)
    backtests = run_backtests(database_url=url, return_state=True)
    # After the backtests, over what they stored (even if some failed): what tonight learns gates the
    # next night's gated strategies.
    learning = distill_reflexions(database_url=url, return_state=True)
    # Last: whatever the night stored, even after a failure, is sealed and verified.
    provenance = verify_provenance(database_url=url, checkpoint_dir=checkpoint_dir, return_state=True)
    ingested = ingestion.result(raise_on_failure=False)
    if isinstance(ingested, BaseException):
        raise ingested
    return {
        "ingestion": ingested,
        "embedding": embedding,
        "maintenance": maintenance.result(),
        "backtests": backtests.result(),
        "learning": learning.result(),
        "provenance": provenance.result(),
    }
