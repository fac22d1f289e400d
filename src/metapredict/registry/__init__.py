"""The only part of metapredict that imports mlflow: tracking, registration, aliases, loading.

Everything is reached through functions taking :class:`~metapredict.settings.StoreSettings`;
nothing touches MLflow at import. The tracking names (which need pandas and matplotlib) are
imported on first use, so a process that only loads models stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metapredict.registry.loader import ModelArtifactError, current_version, load
from metapredict.registry.store import (
    CHALLENGER,
    CHAMPION,
    REFERENCE_PROFILE_ARTIFACT,
    LegacyModelError,
    ModelNotFoundError,
    model_name,
)

if TYPE_CHECKING:
    from metapredict.registry.tracking import JobRun, RegisteredVersion, start_job_run

_LAZY = {"JobRun": "tracking", "RegisteredVersion": "tracking", "start_job_run": "tracking"}

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "REFERENCE_PROFILE_ARTIFACT",
    "JobRun",
    "LegacyModelError",
    "ModelArtifactError",
    "ModelNotFoundError",
    "RegisteredVersion",
    "current_version",
    "load",
    "model_name",
    "start_job_run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"metapredict.registry.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
