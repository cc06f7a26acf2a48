"""Flow `distill_reflexions`: reflect on the stored backtests, distil what they taught, weigh the alternatives.

In the nightly it runs after the backtests, so that what one night learns gates the next night's signals
(``gated:<strategy>`` reads the learning memory when its run is built).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import call, call_each, results, run_hooks, task_runner
from neuraltrade.canonical import digest
from neuraltrade.learning.defaults import (
    COUNTERFACTUAL_CONFIG,
    DISTILLATION_CONFIG,
    EPISODE_CONFIG,
    JUDGE_CONFIG,
    REFLEXION_CONFIG,
)
from tasks import progress
from tasks.database import prepare_database
from tasks.learning import (
    distill_strategy,
    learning_backlog,
    reflect_on_run,
    simulate_run_counterfactuals,
)
from tasks.runs import current_run_id, finish_run, start_run


@flow(name="distill_reflexions", task_runner=task_runner(), **run_hooks())
def distill_reflexions(database_url: str | None = None) -> dict[str, Any]:
    """Turn every stored run's closed trades into judged, critiqued episodes; distil each strategy's episodes
    into patterns at every checkpoint of its history; simulate the counterfactuals of every run.

    Only what is missing is computed (runs without episodes, runs without counterfactuals); every
    strategy with episodes is distilled again, and a distillation already stored is left as it is.
    """
    url = call(prepare_database, database_url)
    backlog = call(learning_backlog, url)
    run_id = call(
        start_run,
        url,
        "distill_reflexions",
        digest(
            {
                "episode": EPISODE_CONFIG.digest,
                "judge": JUDGE_CONFIG.digest,
                "reflexion": REFLEXION_CONFIG.digest,
                "distillation": DISTILLATION_CONFIG.digest,
                "counterfactual": COUNTERFACTUAL_CONFIG.digest,
            }
        ),
        str(current_run_id()),
    )
    progress.expect("reflect", len(backlog["reflect"]))
    reflected = results(call_each(reflect_on_run, [((url, run), {}) for run in backlog["reflect"]]))
    strategies = call(learning_backlog, url)["strategies"]
    distilled = results(call_each(distill_strategy, [((url, strategy), {}) for strategy in strategies]))
    simulated = results(
        call_each(simulate_run_counterfactuals, [((url, run), {}) for run in backlog["counterfactuals"]])
    )
    summary = {
        "runs_reflected": len(reflected),
        "episodes": sum(item["episodes"] for item in reflected),
        "verdicts": sum(item["verdicts"] for item in reflected),
        "pending": sum(item["pending"] for item in reflected),
        "strategies": distilled,
        "distillations": sum(item["new"] for item in distilled),
        "counterfactuals": sum(item["counterfactuals"] for item in simulated),
        "judge_digest": JUDGE_CONFIG.digest,
        "distillation_digest": DISTILLATION_CONFIG.digest,
    }
    call(finish_run, url, run_id, "completed", summary)
    return summary
