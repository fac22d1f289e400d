"""A saved view of each experiment's runs table in the MLflow UI: the headline metrics as columns.

MLflow 3.17's runs table shows no metric columns until the reader picks them (**Columns**), and
has no setting for a default selection. Its UI has saved views instead: **Save view** stores the
page's state (the selected columns among it) as an experiment tag ``mlflow.sharedViewState.<id>``,
the runs tab's **Saved views** menu lists the experiment's views, and a link opens one:
``#/experiments/<id>/runs?viewStateShareKey=<id>`` (MLflow's ``useSharedExperimentViewState``
reads the tag; the value is the envelope of ``savedViewEnvelope.ts``: ``name``, ``createdAt``
and ``state``, a JSON text, compressed or not). Every training job, and ``metapredict ui``,
writes the view below into the task's experiment, so the link the CLI prints opens the runs
table with the headline metrics already there. Nothing here touches the browser's storage or
MLflow's JavaScript.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from metapredict.tasks import TASKS, Task

logger = logging.getLogger(__name__)

#: MLflow's prefix for the experiment tags holding saved views (``constants.ts``).
SAVED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
#: The URL parameter that opens a saved view on the runs tab.
SAVED_VIEW_URL_PARAM = "viewStateShareKey"
#: The id of metapredict's view (the tag key's suffix and the link's parameter value).
HEADLINE_VIEW_ID = "metapredict-headline-metrics"
HEADLINE_VIEW_NAME = "Headline metrics"

#: The runs table's columns in the view, per task: the cross-validated main metric, then the
#: test-split headline metrics (every family run and the oracle have the test ones, so each
#: column lines all of them up).
HEADLINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "tropism": (
        "cv_macro_auroc",
        "test_macro_auroc",
        "test_macro_auprc",
        "test_macro_brier",
        "test_macro_calibration_error",
    ),
    "dormancy": (
        "cv_harrell_c",
        "test_harrell_c",
        "test_uno_c",
        "test_td_auc_60",
        "test_td_auc_120",
        "test_integrated_brier",
    ),
}
#: Attribute columns kept from MLflow's default selection: the registered model a run made.
_ATTRIBUTE_COLUMNS = ("Models",)
#: The runs table's fixed columns (their ids in MLflow's grid), first in the column order.
_LEADING_COLUMNS = ("attributes.`Run Name`", "runDateAndNestInfo", "duration")


def view_tag_key() -> str:
    return f"{SAVED_VIEW_TAG_PREFIX}{HEADLINE_VIEW_ID}"


def _metric_width(name: str) -> int:
    """Pixels for a metric column: its whole name and a full-precision value (MLflow's 100 px
    default cuts ``test_macro_auroc`` and ``test_macro_auprc`` to the same ``test_macro_a...``)."""
    return max(160, 8 * len(name) + 40)


def view_state(task: str) -> dict[str, Any]:
    """The part of the runs page's state the view sets (the rest keeps MLflow's defaults):
    the selected columns, their order (headline metrics in :data:`HEADLINE_COLUMNS`' order,
    rather than by name) and the metric columns' widths.

    Column keys are MLflow's canonical ones: ``metrics.`<name>```, ``attributes.`<name>```.
    """
    metrics = {f"metrics.`{name}`": _metric_width(name) for name in HEADLINE_COLUMNS[task]}
    columns = [f"attributes.`{name}`" for name in _ATTRIBUTE_COLUMNS] + list(metrics)
    return {
        "selectedColumns": columns,
        "columnOrder": [*_LEADING_COLUMNS, *columns],
        "columnWidths": metrics,
    }


def view_tag_value(task: str, created_ms: int) -> str:
    """The tag's value: MLflow's saved-view envelope, the state as plain JSON text."""
    state = json.dumps(view_state(task), separators=(",", ":"))
    envelope = {
        "name": HEADLINE_VIEW_NAME,
        "createdAt": created_ms,
        "updatedAt": created_ms,
        "state": state,
    }
    return json.dumps(envelope, separators=(",", ":"))


def _same_view(value: str | None, task: str) -> bool:
    if value is None:
        return False
    try:
        envelope = json.loads(value)
        return bool(
            envelope["name"] == HEADLINE_VIEW_NAME
            and json.loads(envelope["state"]) == view_state(task)
        )
    except (ValueError, KeyError, TypeError):
        return False


def ensure_headline_view(client: Any, experiment_id: str, task: str) -> None:
    """Write the view into the experiment unless it already holds this one (idempotent)."""
    tags = client.get_experiment(experiment_id).tags
    if _same_view(tags.get(view_tag_key()), task):
        return
    created = int(time.time() * 1000)
    client.set_experiment_tag(experiment_id, view_tag_key(), view_tag_value(task, created))


def try_ensure_headline_view(client: Any, experiment_id: str, task: str) -> None:
    """:func:`ensure_headline_view` for a training job: the view is a convenience, so a store
    that refuses the write (or a concurrent job's write racing this one) never fails the job."""
    from mlflow.exceptions import MlflowException

    try:
        ensure_headline_view(client, experiment_id, task)
    except MlflowException as err:
        logger.warning("could not save the headline-metrics view of %s: %s", task, err)


def view_link(base_url: str, experiment_id: str) -> str:
    """The runs table of ``experiment_id`` opened on the view, in MLflow's model-training mode."""
    return (
        f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&{SAVED_VIEW_URL_PARAM}={HEADLINE_VIEW_ID}"
    )


def headline_view_links(client: Any, base_url: str) -> dict[Task, str]:
    """For each task whose experiment exists: write the view (stores trained before it existed
    get it too) and return the link that opens it. A store that refuses the write keeps its
    experiments out of the answer (logged), so the caller falls back to the plain link."""
    from mlflow.exceptions import MlflowException

    links: dict[Task, str] = {}
    for task in TASKS:
        experiment = client.get_experiment_by_name(task)
        if experiment is None:
            continue
        try:
            ensure_headline_view(client, str(experiment.experiment_id), task)
        except MlflowException as err:
            logger.warning("could not save the headline-metrics view of %s: %s", task, err)
            continue
        links[task] = view_link(base_url, str(experiment.experiment_id))
    return links
