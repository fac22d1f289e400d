"""Loading a registered model natively (no pyfunc on the hot path)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from metapredict.predictor import ModelInfo, Predictor
from metapredict.registry.store import CHAMPION, PREDICTOR_FILE, connect, model_name
from metapredict.settings import StoreSettings

logger = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    """No model version carries the requested alias."""


def current_version(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> str:
    """The version number the alias points at (cheap; used to poll for a new champion)."""
    from mlflow.exceptions import MlflowException

    client, uri, _ = connect(settings)
    try:
        return str(client.get_model_version_by_alias(model_name(task), alias).version)  # type: ignore[attr-defined]
    except MlflowException as err:
        raise ModelNotFoundError(
            f"no model '{model_name(task)}' with alias '{alias}' in {uri}; "
            f"train one first: metapredict train {task}"
        ) from err


def load(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> Predictor:
    """The native predictor of ``models:/metapredict-<task>@<alias>``, with its metadata."""
    import joblib
    import mlflow
    from mlflow.exceptions import MlflowException

    client, uri, _ = connect(settings)
    name = model_name(task)
    try:
        version = client.get_model_version_by_alias(name, alias)  # type: ignore[attr-defined]
    except MlflowException as err:
        raise ModelNotFoundError(
            f"no model '{name}' with alias '{alias}' in {uri}; "
            f"train one first: metapredict train {task}"
        ) from err
    with tempfile.TemporaryDirectory(prefix="metapredict-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version.version}/artifacts/{PREDICTOR_FILE}",
            dst_path=tmp,
        )
        predictor = joblib.load(Path(local))
    if not isinstance(predictor, Predictor) or predictor.task != task:
        raise ModelNotFoundError(f"{name} version {version.version} is not a {task} predictor")
    run_metrics: dict[str, float] = {}
    if version.run_id:
        run_metrics = dict(client.get_run(version.run_id).data.metrics)  # type: ignore[attr-defined]
    predictor.info = ModelInfo(
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=str(version.run_id or ""),
        metrics=run_metrics,
    )
    logger.info("loaded %s version %s (@%s)", name, version.version, alias)
    return predictor
