"""Connecting to the MLflow store (SQLite + local artifacts by default).

Three kinds of tracking URI are supported (:func:`store_kind`):

- ``sqlite:///...``: the embedded default; artifacts in a local folder (the artifact root);
- ``postgresql://...``: the shared database itself; artifacts in the artifact root, which
  every process using the store must see (a shared file system);
- ``http(s)://...``: an ``mlflow server``; artifacts go through the server (proxied artifact
  access, ``mlflow-artifacts:/``), so a client needs nothing but the URL.
"""

from __future__ import annotations

from pathlib import Path

from metapredict.settings import StoreSettings, get_store_settings, sqlite_path

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The native predictor inside the logged model's artifacts (``artifacts/predictor.joblib``).
PREDICTOR_ARTIFACT = "predictor"
PREDICTOR_FILE = "predictor.joblib"
#: Row-free summary of a training run's features (drift reference), an artifact of the run.
REFERENCE_PROFILE_ARTIFACT = "reference/feature_profile.json"


class ModelNotFoundError(LookupError):
    """No model version carries the requested alias."""


def model_name(task: str) -> str:
    return f"metapredict-{task}"


def model_not_found(task: str, alias: str, uri: str) -> ModelNotFoundError:
    """The error for a registry (at ``uri``) where no version of ``task``'s model has ``alias``."""
    return ModelNotFoundError(
        f"no model '{model_name(task)}' with alias '{alias}' in {uri}; "
        f"train one first: metapredict train {task}"
    )


def store_kind(uri: str) -> str:
    """``"sqlite"``, ``"postgresql"``, ``"http"`` (also https) or ``"other"``."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if scheme in ("sqlite", "postgresql", "postgres"):
        return "postgresql" if scheme.startswith("postgres") else "sqlite"
    if scheme in ("http", "https"):
        return "http"
    return "other"


def connect(settings: StoreSettings | None = None) -> tuple[object, str, Path]:
    """Point mlflow at the store; return (client, tracking URI, artifact root)."""
    import mlflow
    from mlflow import MlflowClient

    settings = settings or get_store_settings()
    uri = settings.resolved_tracking_uri()
    root = settings.resolved_artifact_root()
    database = sqlite_path(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    if store_kind(uri) != "http":  # a tracking server stores the artifacts itself
        root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri, root


def experiment_id(client: object, task: str, artifact_root: Path) -> str:
    """The experiment named after the task, created with artifacts under ``artifact_root``.

    On a tracking server the server chooses the location (its proxied artifact store), so
    that a client on another machine never writes to a path of its own file system.
    """
    from mlflow import MlflowClient

    assert isinstance(client, MlflowClient)
    experiment = client.get_experiment_by_name(task)
    if experiment is not None:
        return str(experiment.experiment_id)
    if store_kind(str(client.tracking_uri)) == "http":
        return str(client.create_experiment(task))
    location = (artifact_root / task).resolve().as_uri()
    return str(client.create_experiment(task, artifact_location=location))
