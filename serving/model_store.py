"""The models the service answers with, swapped atomically on reload.

A request takes one :class:`ModelSet` snapshot at its start and finishes on it, so a reload
never changes the model under an in-flight request. A failed load leaves the old model serving
and is reported in ``/v1/models`` and the log, naming the exception type and the reason
("champion v5 failed to load: ModelArtifactError: ..."), which :meth:`ModelStore.problem`
tells apart from "no champion". A version that failed is retried by the poller with backoff
(:data:`RETRY_BASE_S` doubling up to :data:`RETRY_MAX_S`), not on every poll, and logged once
per attempt; an admin reload retries at once. A reload that takes longer than
``reload_timeout_seconds`` answers "failed" and finishes in the background. No message carries
an absolute local path (:func:`serving.redact.without_paths`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from metapredict import features, schema
from metapredict.predictor import COMPATIBLE_SCHEMA_MAJORS, Predictor
from serving.redact import without_paths
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

Loader = Callable[[str, str, ServingSettings], Predictor]
VersionProbe = Callable[[str, str, ServingSettings], str]

#: First wait before the poller retries a version that failed to load; doubles per failure.
RETRY_BASE_S = 30.0
#: Longest wait between retries of the same failed version.
RETRY_MAX_S = 600.0


def describe_error(err: BaseException) -> str:
    """``Type: reason`` of an exception, never empty, with local paths removed."""
    reason = str(err).strip() or repr(err)
    return without_paths(f"{type(err).__name__}: {reason}")


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


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class ReloadResult:
    task: str
    status: str  # "loaded", "unchanged", "failed", "missing"
    version: str | None
    message: str
    at: float = field(default_factory=time.time)
    #: for a failed version: when the poller tries it again (wall clock)
    retry_at: float | None = None
    #: False when the poller skipped a failed version waiting for its retry
    attempted: bool = True

    def as_dict(self) -> dict[str, Any]:
        out = {
            "task": self.task,
            "status": self.status,
            "version": self.version,
            "message": without_paths(self.message),  # the log keeps the whole message
            "at": _iso(self.at),
        }
        if self.retry_at is not None:
            out["next_retry"] = _iso(self.retry_at)
        return out


@dataclass
class _Failure:
    """A version that failed to load, and when the poller may try it again."""

    version: str
    attempts: int
    retry_at: float  # time.monotonic()
    result: ReloadResult


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
        self._failures: dict[str, _Failure] = {}
        self._in_flight: set[str] = set()
        self._read_via: dict[str, str] = {}
        self._guard = threading.Lock()

    @property
    def current(self) -> ModelSet:
        return self._current

    def ready(self) -> bool:
        return all(t in self._current.predictors for t in self.settings.tasks)

    def status(self, task: str) -> str:
        """``loaded``, ``failed`` (a champion exists but did not load), ``missing`` (no
        champion) or ``loading`` (not tried yet)."""
        if task in self._current.predictors:
            return "loaded"
        last = self.last_reload.get(task)
        return (
            last.status
            if last is not None and last.status in {"failed", "missing"}
            else ("loading")
        )

    def problem(self, task: str) -> str | None:
        """Why ``task`` has no model (None when one is loaded): "champion v5 failed to load:
        ...", "no champion ...", or "not loaded yet"."""
        if task in self._current.predictors:
            return None
        alias = self.settings.alias
        last = self.last_reload.get(task)
        if last is None:
            return f"the {task} model is still loading"
        if last.status == "missing":
            return f"no {alias} for {task}: {last.message}"
        if last.status == "failed":
            return last.message
        return f"the {task} model is not loaded yet"

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
        retry_later: bool = False,
    ) -> ReloadResult:
        from metapredict.registry import ModelNotFoundError

        alias = self.settings.alias
        current = self._current.get(task)
        try:
            version = (probe or self._probe)(task, alias, self.settings)
        except ModelNotFoundError as err:
            self._failures.pop(task, None)
            return ReloadResult(task, "missing", None, without_paths(str(err)))
        except Exception as err:
            return ReloadResult(
                task, "failed", None, f"looking up the {alias} failed: {describe_error(err)}"
            )
        if not force and current is not None and current.info.version == version:
            self._failures.pop(task, None)
            return ReloadResult(task, "unchanged", version, f"version {version} already loaded")
        failure = self._failures.get(task)
        waiting = failure is not None and time.monotonic() < failure.retry_at
        if retry_later and waiting and failure is not None and failure.version == version:
            return replace(failure.result, attempted=False)
        try:
            predictor = (loader or self._loader)(task, alias, self.settings)
            check_compatible(predictor)
        except IncompatibleModelError as err:
            if raise_incompatible:
                raise
            return self._failed(task, version, without_paths(str(err)))
        except Exception as err:
            return self._failed(
                task, version, f"{alias} v{version} failed to load: {describe_error(err)}"
            )
        self._failures.pop(task, None)
        self._swap(task, predictor)
        self._note_read_via(task, predictor)
        return ReloadResult(
            task, "loaded", predictor.info.version, f"loaded version {predictor.info.version}"
        )

    def _failed(self, task: str, version: str, message: str) -> ReloadResult:
        """Record a failed load of ``version``; the poller retries it after a doubling wait."""
        previous = self._failures.get(task)
        attempts = previous.attempts + 1 if previous and previous.version == version else 1
        wait = min(RETRY_MAX_S, max(RETRY_BASE_S, self.settings.poll_seconds) * 2 ** (attempts - 1))
        result = ReloadResult(task, "failed", version, message, retry_at=time.time() + wait)
        self._failures[task] = _Failure(version, attempts, time.monotonic() + wait, result)
        return result

    def _note_read_via(self, task: str, predictor: Predictor) -> None:
        """Log once when a task's model is read another way (e.g. through MLflow's client)."""
        via = predictor.info.read_via
        if via and self._read_via.get(task) != via:
            self._read_via[task] = via
            if via != "direct":
                logger.warning("%s: %s", task, via)

    async def reload(self, *, force: bool = False, poll: bool = False) -> list[ReloadResult]:
        """Look for a new champion of every task now; swap in what changed.

        ``poll``: a failed version is tried again only once its backoff has passed (an admin
        reload tries it at once).
        """
        async with self._lock:
            results = []
            for task in self.settings.tasks:
                result = await self._reload_task(task, force=force, retry_later=poll)
                self.last_reload[task] = result
                if result.status == "failed" and result.attempted:
                    retry = (
                        f"; next try in {result.retry_at - time.time():.0f} s"
                        if result.retry_at is not None
                        else ""
                    )
                    logger.error("reload of %s failed: %s%s", task, result.message, retry)
                elif result.status == "loaded":
                    logger.info("%s: %s", task, result.message)
                results.append(result)
            return results

    async def _reload_task(self, task: str, *, force: bool, retry_later: bool) -> ReloadResult:
        """One task's reload in a worker thread, answered within ``reload_timeout_seconds``."""
        timeout = self.settings.reload_timeout_seconds
        with self._guard:
            if task in self._in_flight:
                return ReloadResult(
                    task,
                    "failed",
                    None,
                    f"the previous reload of {task} is still running (it took longer than "
                    f"{timeout:g} s)",
                )
            self._in_flight.add(task)
        work = functools.partial(
            self._load_task, task, force=force, raise_incompatible=False, retry_later=retry_later
        )
        future = asyncio.get_running_loop().run_in_executor(None, work)
        timed_out = False

        def finished(done: asyncio.Future[ReloadResult]) -> None:
            with self._guard:
                self._in_flight.discard(task)
            if timed_out and not done.cancelled() and done.exception() is None:
                late = done.result()
                self.last_reload[task] = late
                logger.warning("%s: the slow reload finished: %s", task, late.message)

        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            timed_out = True
            return ReloadResult(
                task,
                "failed",
                None,
                f"reloading {task} took longer than {timeout:g} s "
                "(METAPREDICT_RELOAD_TIMEOUT_SECONDS); it goes on in the background",
            )

    async def poll_forever(self) -> None:
        """Poll the registry every ``poll_seconds`` (the lifespan cancels this task)."""
        interval = self.settings.poll_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload(poll=True)
            except Exception:
                logger.exception("polling the registry failed")
