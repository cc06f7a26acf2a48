"""Flow `embed_observations`: embed every bar that has no vector yet into the market-state memory."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import call, call_each, results, run_hooks, task_runner
from neuraltrade.canonical import digest
from neuraltrade.memory.embedding import WindowEmbedderConfig
from tasks import progress
from tasks.database import prepare_database
from tasks.embed import MARKET_STATE_COLLECTION, embed_symbol, list_symbols
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="embed_observations", task_runner=task_runner(), **run_hooks())
def embed_observations(
    database_url: str | None = None,
    symbols: list[str] | None = None,
    window: int = 32,
    dimension: int = 512,
    collection: str = MARKET_STATE_COLLECTION,
) -> dict[str, Any]:
    """Embed the bars of `symbols` (default: every symbol) that have no vector in `collection` yet."""
    url = call(prepare_database, database_url)
    config = WindowEmbedderConfig(window=window, dimension=dimension)
    chosen = symbols or call(list_symbols, url)
    progress.expect("embed", len(chosen))
    run_id = call(
        start_run,
        url,
        "embed_observations",
        digest({"embedder": config.digest, "collection": collection}),
        str(current_run_id()),
    )
    embedded = results(
        call_each(embed_symbol, [((url, symbol, config), {"collection": collection}) for symbol in chosen])
    )
    summary = {
        "collection": collection,
        "embedder_digest": config.digest,
        "symbols": embedded,
        "embedded": sum(result["embedded"] for result in embedded),
    }
    call(finish_run, url, run_id, "completed", summary)
    return summary
