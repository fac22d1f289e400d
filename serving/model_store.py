"""The models the service answers with, swapped atomically on reload.

A request takes one :class:`ModelSet` snapshot at its start and finishes on it, so a reload
never changes the model under an in-flight request. A failed load leaves the old model serving
and is reported in ``/v1/models`` and the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from metapredict import features, schema
from metapredict.predictor import COMPATIBLE_SCHEMA_MAJORS, Predictor
from serving.redact import without_paths
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

Loader = Callable[[str, str, ServingSettings], Predictor]
VersionProbe = Callable[[str, str, ServingSettings], str]


class IncompatibleModelError(RuntimeError):
    """A registered model was trained on a different schema than this code's."""


def check_compatible(predictor: Predictor) -> None:
    """Refuse a model whose schema version or feature list this code cannot serve.

    Models of schema 1.x (before open cancer types and stage IV) still load: their features
    and codes are the same, and what they did not record is filled in on unpickling (their
    six cancer types, stages I-III, all eight sites).
    """
    theirs = predictor.schema_version.split(".")[0]
    if theirs not in COMPATIBLE_SCHEMA_MAJORS:
        raise IncompatibleModelError(
            f"{predictor.info.name} version {predictor.info.version} was trained on schema "
            f"{predictor.schema_version}; this service speaks schema {schema.SCHEMA_VERSION} "
            f"and loads models of schema {' or '.join(f'{m}.x' for m in COMPATIBLE_SCHEMA_MAJORS)}."
            f" Retrain the model with this version of metapredict (metapredict train "
            f"{predictor.task})."
        )
    if tuple(predictor.feature_names) != features.feature_names():
        missing = sorted(set(features.feature_names()) - set(predictor.feature_names))
        unknown = sorted(set(predictor.feature_names) - set(features.feature_names()))
        raise IncompatibleModelError(
            f"{predictor.info.name} version {predictor.info.version} expects other features "
            f"than this service's schema (missing here: {unknown}, new here: {missing}). "
            "Retrain the model with this version of metapredict."
        )


@dataclass(frozen=True)
class ReloadResult:
    task: str
    status: str  # "loaded", "unchanged", "failed", "missing"
    version: str | None
    message: str
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "version": self.version,
            "message": without_paths(self.message),  # the log keeps the whole message
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
        }


@dataclass(frozen=True)
class ModelSet:
    """An immutable snapshot: task -> predictor (absent while not loaded)."""

    predictors: MappingProxyType[str, Predictor]
    loaded_at: MappingProxyType[str, float]

    def get(self, task: str) -> Predictor | None:
        return self.predictors.get(task)


class ModelStore:
    """Holds the current :class:`ModelSet` and reloads it from the registry."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        loader: Loader,
        version_probe: VersionProbe,
        on_change: Callable[[ModelSet], None] | None = None,
        startup_loader: Loader | None = None,
        startup_probe: VersionProbe | None = None,
    ) -> None:
        self.settings = settings
        self._loader = loader
        self._probe = version_probe
        self._startup_loader = startup_loader or loader
        self._startup_probe = startup_probe or version_probe
        self._on_change = on_change
        self._current = ModelSet(MappingProxyType({}), MappingProxyType({}))
        self._lock = asyncio.Lock()
        self.last_reload: dict[str, ReloadResult] = {}

    @property
    def current(self) -> ModelSet:
        return self._current

    def ready(self) -> bool:
        return all(t in self._current.predictors for t in self.settings.tasks)

    def _swap(self, task: str, predictor: Predictor) -> None:
        predictors = dict(self._current.predictors)
        loaded_at = dict(self._current.loaded_at)
        predictors[task] = predictor
        loaded_at[task] = time.time()
        self._current = ModelSet(MappingProxyType(predictors), MappingProxyType(loaded_at))
        if self._on_change is not None:
            self._on_change(self._current)

    def load_initial(self) -> None:
        """Load every task's model (start-up). An incompatible model stops the service.

        Uses the start-up loader and probe when given (e.g. a registry prefetch begun before
        the service's imports); reloads always use the regular ones.
        """
        for task in self.settings.tasks:
            result = self._load_task(
                task,
                force=True,
                raise_incompatible=True,
                loader=self._startup_loader,
                probe=self._startup_probe,
            )
            self.last_reload[task] = result
            log = logger.warning if result.status in {"failed", "missing"} else logger.info
            log("%s: %s", task, result.message)

    def _load_task(
        self,
        task: str,
        *,
        force: bool,
        raise_incompatible: bool,
        loader: Loader | None = None,
        probe: VersionProbe | None = None,
    ) -> ReloadResult:
        from metapredict.registry import ModelNotFoundError

        alias = self.settings.alias
        current = self._current.get(task)
        try:
            version = (probe or self._probe)(task, alias, self.settings)
        except ModelNotFoundError as err:
            return ReloadResult(task, "missing", None, str(err))
        except Exception as err:
            return ReloadResult(task, "failed", None, f"registry lookup failed: {err}")
        if not force and current is not None and current.info.version == version:
            return ReloadResult(task, "unchanged", version, f"version {version} already loaded")
        try:
            predictor = (loader or self._loader)(task, alias, self.settings)
            check_compatible(predictor)
        except IncompatibleModelError as err:
            if raise_incompatible:
                raise
            return ReloadResult(task, "failed", version, str(err))
        except Exception as err:
            return ReloadResult(task, "failed", version, f"loading version {version} failed: {err}")
        self._swap(task, predictor)
        return ReloadResult(
            task, "loaded", predictor.info.version, f"loaded version {predictor.info.version}"
        )

    async def reload(self, *, force: bool = False) -> list[ReloadResult]:
        """Look for a new champion of every task now; swap in what changed."""
        async with self._lock:
            results = []
            for task in self.settings.tasks:
                result = await asyncio.to_thread(
                    self._load_task, task, force=force, raise_incompatible=False
                )
                self.last_reload[task] = result
                if result.status == "failed":
                    logger.error("reload of %s failed: %s", task, result.message)
                elif result.status == "loaded":
                    logger.info("%s: %s", task, result.message)
                results.append(result)
            return results

    async def poll_forever(self) -> None:
        """Poll the registry every ``poll_seconds`` (the lifespan cancels this task)."""
        interval = self.settings.poll_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:
                logger.exception("polling the registry failed")
