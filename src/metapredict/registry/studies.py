"""MLflow runs of a hyperparameter study: one parent run per study, one nested run per trial.

Workers of one study may run in different processes or machines, so the runs are created and
ended through MLflow's client (no fluent active run): the parent's id is shared through the
study's storage, and each trial's run names it as ``mlflow.parentRunId`` (how MLflow nests
runs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from metapredict.registry.promotion import DecisionRun
from metapredict.registry.store import connect, experiment_id
from metapredict.registry.tracking import git_commit
from metapredict.settings import StoreSettings

PARENT_TAG = "mlflow.parentRunId"


class TrialRun(DecisionRun):
    """A trial's run: params, tags, and metrics with a step (the CV fold)."""

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step) for k, v in values.items() if v == v]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)


def create_parent_run(
    task: str, study: str, *, tags: Mapping[str, str], settings: StoreSettings | None = None
) -> str:
    """The study's parent run (``tune-<study>`` in the task's experiment); its id."""
    client: Any
    client, _, root = connect(settings)
    exp = experiment_id(client, task, root)
    run = client.create_run(
        exp,
        run_name=f"tune-{study}",
        tags={**dict(tags), "job": "tune", "git_commit": git_commit()},
    )
    return str(run.info.run_id)


def finish_parent_run(
    run_id: str,
    *,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    config_text: str,
    settings: StoreSettings | None = None,
) -> None:
    """Log the study's outcome (best value, counts, the best config) and end the parent."""
    client: Any
    client, _, _ = connect(settings)
    parent = TrialRun(run_id, client)
    parent.log_metrics(metrics)
    parent.set_tags(tags)
    parent.log_text(config_text, "best_config.toml")
    client.set_terminated(run_id, "FINISHED")


@contextmanager
def trial_run(
    task: str,
    parent_run_id: str,
    name: str,
    tags: Mapping[str, str],
    settings: StoreSettings | None = None,
    stopped: tuple[type[BaseException], ...] = (),
) -> Iterator[TrialRun]:
    """A run nested under the study's parent: FINISHED on success, KILLED when the body raises
    one of ``stopped`` (a pruned trial), FAILED on any other exception."""
    client: Any
    client, _, root = connect(settings)
    exp = experiment_id(client, task, root)
    run = client.create_run(
        exp, run_name=name, tags={**dict(tags), PARENT_TAG: parent_run_id, "job": "tune"}
    )
    trial = TrialRun(run.info.run_id, client)
    try:
        yield trial
    except stopped:
        client.set_terminated(run.info.run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
