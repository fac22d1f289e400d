"""Loading a registered model natively (no pyfunc on the hot path).

Loading is two steps: :func:`fetch` asks the registry which version an alias names and finds
that version's predictor artifact, and :func:`open_fetched` unpickles it (no MLflow). :func:`load`
does both. A local SQLite store with local artifacts is read directly
(:mod:`metapredict.registry.direct_read`, no MLflow import, the artifact opened in place); any
other store goes through MLflow's client, which downloads the artifact. When MLflow's client is
needed, a server's start-up runs the first step in a child process
(:mod:`metapredict.registry.fetch`) while it imports its own stack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metapredict.registry.direct_read import read_version
from metapredict.registry.store import (
    CHAMPION,
    PREDICTOR_FILE,
    ModelNotFoundError,
    connect,
    model_name,
    model_not_found,
    scratch_dir,
)
from metapredict.settings import StoreSettings, get_store_settings

if TYPE_CHECKING:
    from metapredict.predictor import Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedModel:
    """A registered version's predictor artifact at ``predictor_path`` (downloaded, or the file
    in a local artifact store)."""

    task: str
    name: str
    version: str
    alias: str
    run_id: str
    predictor_path: str
    metrics: dict[str, float] = field(default_factory=dict)


def _version_by_alias(client: Any, task: str, alias: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name(task), alias)
    except MlflowException as err:
        raise model_not_found(task, alias, uri) from err


def current_version(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> str:
    """The version number the alias points at (cheap; used to poll for a new champion)."""
    settings = settings or get_store_settings()
    local = read_version(task, alias, settings)
    if local is not None:
        return local.version
    client, uri, _ = connect(settings)
    return str(_version_by_alias(client, task, alias, uri).version)


def find_local(task: str, alias: str, settings: StoreSettings) -> FetchedModel | None:
    """The alias's predictor where it lies in a directly readable store, or None (ask MLflow)."""
    local = read_version(task, alias, settings)
    if local is None:
        return None
    return FetchedModel(
        task=task,
        name=model_name(task),
        version=local.version,
        alias=alias,
        run_id=local.run_id,
        predictor_path=str(local.predictor_path),
        metrics=dict(local.metrics),
    )


def fetch(task: str, alias: str, settings: StoreSettings | None, dest: Path) -> FetchedModel:
    """Resolve ``models:/metapredict-<task>@<alias>`` and find its predictor file.

    A store read directly names the file where it lies in the store; otherwise MLflow's client
    downloads it into ``dest``.
    """
    settings = settings or get_store_settings()
    found = find_local(task, alias, settings)
    if found is not None:
        return found
    import mlflow

    name = model_name(task)
    client, uri, _ = connect(settings)
    version = _version_by_alias(client, task, alias, uri)
    dest.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version.version}/artifacts/{PREDICTOR_FILE}",
        dst_path=str(dest),
    )
    run_metrics: dict[str, float] = {}
    if version.run_id:
        run_metrics = dict(client.get_run(version.run_id).data.metrics)  # type: ignore[attr-defined]
    return FetchedModel(
        task=task,
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=str(version.run_id or ""),
        predictor_path=str(local),
        metrics=run_metrics,
    )


def open_fetched(fetched: FetchedModel) -> Predictor:
    """Unpickle a fetched predictor and attach where it came from."""
    import joblib

    from metapredict.predictor import ModelInfo, Predictor

    predictor = joblib.load(Path(fetched.predictor_path))
    if not isinstance(predictor, Predictor) or predictor.task != fetched.task:
        raise ModelNotFoundError(
            f"{fetched.name} version {fetched.version} is not a {fetched.task} predictor"
        )
    predictor.info = ModelInfo(
        name=fetched.name,
        version=fetched.version,
        alias=fetched.alias,
        run_id=fetched.run_id,
        metrics=dict(fetched.metrics),
    )
    logger.info("loaded %s version %s (@%s)", fetched.name, fetched.version, fetched.alias)
    return predictor


def load(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> Predictor:
    """The native predictor of ``models:/metapredict-<task>@<alias>``, with its metadata."""
    with scratch_dir("model") as tmp:
        return open_fetched(fetch(task, alias, settings, Path(tmp)))
