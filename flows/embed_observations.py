"""Flow `embed_observations`: embed every bar that has no vector yet into the market-state memory."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from flows import task_runner
from neuraltrade.canonical import digest
from neuraltrade.embedding import WindowEmbedderConfig
from tasks.database import prepare_database
from tasks.embed import MARKET_STATE_COLLECTION, embed_symbol, list_symbols
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="embed_observations", task_runner=task_runner())
def embed_observations(
    database_url: str | None = None,
    symbols: list[str] | None = None,
    window: int = 32,
    dimension: int = 512,
    collection: str = MARKET_STATE_COLLECTION,
) -> dict[str, Any]:
    """Embed the bars of `symbols` (default: every symbol) that have no vector in `collection` yet."""
    url = prepare_database(database_url)
    config = WindowEmbedderConfig(window=window, dimension=dimension)
    chosen = symbols or list_symbols(url)
    run_id = start_run(
        url, "embed_observations", digest({"embedder": config.digest, "collection": collection}), str(current_run_id())
    )
    futures = embed_symbol.map(unmapped(url), chosen, unmapped(config), collection=unmapped(collection))
    results = [future.result() for future in futures]
    summary = {
        "collection": collection,
        "embedder_digest": config.digest,
        "symbols": results,
        "embedded": sum(result["embedded"] for result in results),
    }
    finish_run(url, run_id, "completed", summary)
    return summary
