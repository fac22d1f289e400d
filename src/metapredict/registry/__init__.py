"""The only part of metapredict that imports mlflow: tracking, registration, aliases, loading.

Everything is reached through functions taking :class:`~metapredict.settings.StoreSettings`;
nothing touches MLflow at import.
"""

from metapredict.registry.loader import ModelNotFoundError, current_version, load
from metapredict.registry.store import (
    CHALLENGER,
    CHAMPION,
    REFERENCE_PROFILE_ARTIFACT,
    model_name,
)
from metapredict.registry.tracking import JobRun, RegisteredVersion, start_job_run

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "REFERENCE_PROFILE_ARTIFACT",
    "JobRun",
    "ModelNotFoundError",
    "RegisteredVersion",
    "current_version",
    "load",
    "model_name",
    "start_job_run",
]
