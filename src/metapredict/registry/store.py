"""Connecting to the MLflow store (SQLite + local artifacts by default)."""

from __future__ import annotations

from pathlib import Path

from metapredict.settings import StoreSettings, get_store_settings, sqlite_path

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The native predictor inside the logged model's artifacts: the folder ``artifacts/predictor/``
#: (``predictor.json`` + LightGBM model text, :mod:`metapredict.registry.artifact`), also the
#: pyfunc flavour's artifact key.
PREDICTOR_ARTIFACT = "predictor"
#: Where models registered before the JSON format kept a pickled predictor (refused unless
#: ``METAPREDICT_ALLOW_PICKLE=1``).
LEGACY_PREDICTOR_FILE = "predictor.joblib"
#: Row-free summary of a training run's features (drift reference), an artifact of the run.
REFERENCE_PROFILE_ARTIFACT = "reference/feature_profile.json"


class ModelNotFoundError(LookupError):
    """No model version carries the requested alias."""


class LegacyModelError(RuntimeError):
    """A version saved as a pickle (before the JSON format), refused unless allowed."""


def legacy_refusal(task: str, version: str) -> LegacyModelError:
    return LegacyModelError(
        f"{model_name(task)} version {version} was saved as a pickle (predictor.joblib), which "
        f"can run code when loaded, and is refused. Retrain it: metapredict train {task}. To load "
        "old pickled versions you trust, set METAPREDICT_ALLOW_PICKLE=1."
    )


def model_name(task: str) -> str:
    return f"metapredict-{task}"


def model_not_found(task: str, alias: str, uri: str) -> ModelNotFoundError:
    """The error for a registry (at ``uri``) where no version of ``task``'s model has ``alias``."""
    return ModelNotFoundError(
        f"no model '{model_name(task)}' with alias '{alias}' in {uri}; "
        f"train one first: metapredict train {task}"
    )


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
    root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri, root


def experiment_id(client: object, task: str, artifact_root: Path) -> str:
    """The experiment named after the task, created with artifacts under ``artifact_root``."""
    from mlflow import MlflowClient

    assert isinstance(client, MlflowClient)
    experiment = client.get_experiment_by_name(task)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (artifact_root / task).resolve().as_uri()
    return str(client.create_experiment(task, artifact_location=location))
