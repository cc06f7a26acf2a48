"""Flow `maintain_index`: check, prune, compact, re-index and audit the vector memory."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import call, call_each, results, run_hooks, task_runner
from models.vector_maintenance import RUN_KIND
from neuraltrade.canonical import to_plain
from neuraltrade.errors import RecallBelowThreshold
from neuraltrade.memory.maintenance import MaintenanceConfig
from tasks import progress
from tasks.database import prepare_database
from tasks.memory import (
    audit_recall,
    check_integrity,
    list_collections,
    optimize_database,
    plan_vacuum,
    prune_collection,
    rebuild_vector_table,
    refresh_index,
    vacuum_database,
)
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="maintain_index", task_runner=task_runner(), **run_hooks())
def maintain_index(
    database_url: str | None = None,
    config: MaintenanceConfig = MaintenanceConfig(),  # noqa: B008 - frozen, so one shared default is safe
    collections: list[str] | None = None,
) -> dict[str, Any]:
    """Check, prune, compact, re-index and audit every vector collection (default: all of them).

    A collection whose stores disagree fails the run with `MemoryIntegrityError` before anything is
    changed. Recall below `config.recall_threshold` fails it with `RecallBelowThreshold`, after the
    figures of every collection are stored with the run, so `neuraltrade memory stats` shows them.
    """
    url = call(prepare_database, database_url)
    names = collections or call(list_collections, url)
    progress.expect("maintain", len(names))
    run_id = call(start_run, url, RUN_KIND, config.digest, str(current_run_id()))
    summary: dict[str, Any] = {"config": to_plain(config), "collections": names}
    try:
        outcomes: dict[str, Any] = dict(
            zip(names, call_each(check_integrity, [((url, name), {}) for name in names]), strict=True)
        )
        summary["integrity"] = {name: _plain(outcome) for name, outcome in outcomes.items()}
        failures: list[BaseException] = [outcome for outcome in outcomes.values() if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]
        # Writers one after another: SQLite takes one at a time, and a long one would time the next out.
        summary["pruned"] = {name: call(prune_collection, url, name, config.retention_days) for name in names}
        plan = call(plan_vacuum, url, config)
        summary["vacuum"] = {"plan": plan}
        if plan["due"]:
            summary["vector_tables"] = {name: call(rebuild_vector_table, url, name) for name in names}
            summary["vacuum"] = {**call(vacuum_database, url), "plan": plan}
        summary["optimize"] = call(optimize_database, url)
        refreshes = results(call_each(refresh_index, [((url, name, config), {}) for name in names]))
        summary["index"] = dict(zip(names, refreshes, strict=True))
        audits = results(call_each(audit_recall, [((url, name, config), {}) for name in names]))
        summary["recall"] = dict(zip(names, audits, strict=True))
    except Exception as error:
        summary["error"] = str(error)
        call(finish_run, url, run_id, "failed", summary)
        raise
    summary["pruned_total"] = sum(report["deleted"] for report in summary["pruned"].values())
    below = [report for report in summary["recall"].values() if report["recall"] < config.recall_threshold]
    call(finish_run, url, run_id, "failed" if below else "completed", summary)
    if below:
        worst = min(below, key=lambda report: report["recall"])
        raise RecallBelowThreshold(worst["collection"], worst["recall"], config.recall_threshold, config.k)
    return summary


def _plain(outcome: Any) -> Any:
    return str(outcome) if isinstance(outcome, BaseException) else outcome
