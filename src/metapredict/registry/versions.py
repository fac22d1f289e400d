"""Loading a registered model by version number (``metapredict predict --version V``).

Aliases are the normal way in (:func:`metapredict.registry.loader.load`); a version number
pins an exact model, e.g. to re-score a cohort with the model a report used. The predictor
file is found through MLflow's client and opened by the loader's :func:`open_fetched`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metapredict.registry.loader import FetchedModel, open_fetched
from metapredict.registry.store import PREDICTOR_FILE, ModelNotFoundError, connect, model_name
from metapredict.settings import StoreSettings

if TYPE_CHECKING:
    from metapredict.predictor import Predictor


def load_version(task: str, version: str, settings: StoreSettings | None = None) -> Predictor:
    """The native predictor of ``models:/metapredict-<task>/<version>``, with its metadata."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name = model_name(task)
    client: Any
    client, uri, _ = connect(settings)
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as err:
        raise ModelNotFoundError(
            f"no version {version} of model '{name}' in {uri}; list the versions with "
            "`metapredict ui` or use --alias champion"
        ) from err
    metrics: dict[str, float] = {}
    if found.run_id:
        metrics = dict(client.get_run(found.run_id).data.metrics)
    with tempfile.TemporaryDirectory(prefix="metapredict-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{found.version}/artifacts/{PREDICTOR_FILE}",
            dst_path=tmp,
        )
        fetched = FetchedModel(
            task=task,
            name=name,
            version=str(found.version),
            alias="",
            run_id=str(found.run_id or ""),
            predictor_path=str(Path(local)),
            metrics=metrics,
        )
        return open_fetched(fetched)
