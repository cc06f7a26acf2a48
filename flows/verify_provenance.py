"""Flow `verify_provenance`: seal the night's log with a signed checkpoint, then verify the whole database.

The last stage of the nightly. The checkpoint (log origin, size, root, this flow run, code version) goes to
the checkpoint directory outside the database and onto the flow run as an artifact; verification then reads
the database only through the public key list and the checkpoints, as an auditor would. A failure fails
the flow, naming the first record that does not verify; the result is exported as Prometheus gauges
(`neuraltrade_provenance_verified`, `..._log_entries`, `..._findings`).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import call, run_hooks
from neuraltrade.canonical import digest
from neuraltrade.errors import ProvenanceFailed
from tasks.database import prepare_database
from tasks.provenance import checkpoint_directory, seal_log, verify_log
from tasks.runs import current_run_id, finish_run, start_run

RUN_KIND = "verify_provenance"


@flow(name="verify_provenance", **run_hooks())
def verify_provenance(database_url: str | None = None, checkpoint_dir: str | None = None) -> dict[str, Any]:
    """Write a signed checkpoint of the log, then verify every record, link, signature and checkpoint."""
    url = call(prepare_database, database_url)
    directory = str(checkpoint_directory(url, checkpoint_dir))
    flow_run = str(current_run_id())
    run_id = call(start_run, url, RUN_KIND, digest({"checkpoint_dir": directory}), flow_run)
    sealed = call(seal_log, url, directory, flow_run)
    report = call(verify_log, url, directory)
    details = {
        "verified": int(report["ok"]),
        "log_entries": report["log_size"],
        "findings": len(report["findings"]),
        "records": report["records"],
        "seconds": report["seconds"],
        "checkpoint": sealed["path"],
    }
    call(finish_run, url, run_id, "completed" if report["ok"] else "failed", details)
    if not report["ok"]:
        raise ProvenanceFailed(report["summary"])
    return {"checkpoint": sealed, "verify": report}
