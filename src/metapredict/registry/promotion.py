"""Promotion: a compare-and-set of the ``champion`` alias under an exclusive lock.

Two retraining jobs may finish at the same moment. Each evaluated its challenger against the
champion it saw at the start; at promotion time it takes an exclusive ``fcntl.flock`` on a
lock file next to the SQLite store, re-reads the champion, and moves the alias only if the
champion is still the version it evaluated against. Moving the alias is one registry write
and the last step of a job: a job killed before it leaves the champion untouched.

Also here: the retraining job's decision run (an MLflow run created with the client, so it
can stay open while the training job runs its own fluent runs), version tags, and reading a
training run's row-free feature profile (the drift reference).
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from metapredict.registry.store import (
    CHALLENGER,
    CHAMPION,
    REFERENCE_PROFILE_ARTIFACT,
    connect,
    experiment_id,
    model_name,
    scratch_dir,
)
from metapredict.registry.tracking import git_commit
from metapredict.settings import StoreSettings, get_store_settings, sqlite_path

logger = logging.getLogger(__name__)

#: MLflow limits model-version tag values; longer values are cut with an ellipsis.
_MAX_TAG = 4000


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    #: the champion found under the lock (None: there was none)
    champion_before: str | None
    champion_after: str | None


def lock_path(settings: StoreSettings | None = None) -> Path:
    """``<store>.registry.lock`` next to a SQLite store; else in the artifact root."""
    settings = settings or get_store_settings()
    db = sqlite_path(settings.resolved_tracking_uri())
    if db is not None:
        return db.with_name(db.name + ".registry.lock")
    return settings.resolved_artifact_root() / "registry.lock"


@contextmanager
def registry_lock(settings: StoreSettings | None = None) -> Iterator[None]:
    """Exclusive lock shared by every process (and thread) promoting in this store."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(task: str, settings: StoreSettings | None = None) -> str | None:
    """The version ``champion`` points at, or None when the task has no champion."""
    client, _, _ = connect(settings)
    return _alias_version(client, model_name(task), CHAMPION)


def promote_if_unchanged(
    task: str,
    version: str,
    expected_champion: str | None,
    settings: StoreSettings | None = None,
) -> PromotionResult:
    """Point ``champion`` at ``version`` iff it still points at ``expected_champion``.

    ``expected_champion=None`` means "there was no champion": the promotion happens only if
    there still is none. When the promoted version also carried ``challenger``, that alias is
    removed (it is no longer a challenger).
    """
    client, _, _ = connect(settings)
    name = model_name(task)
    with registry_lock(settings):
        current = _alias_version(client, name, CHAMPION)
        if current != expected_champion:
            logger.warning(
                "%s: champion changed during the job (expected %s, found %s); not promoting %s",
                name,
                expected_champion,
                current,
                version,
            )
            return PromotionResult(False, current, current)
        client.set_registered_model_alias(name, CHAMPION, version)  # type: ignore[attr-defined]
        if _alias_version(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)  # type: ignore[attr-defined]
    logger.info("%s: champion moved from %s to %s", name, expected_champion, version)
    return PromotionResult(True, expected_champion, version)


def tag_version(
    task: str, version: str, tags: Mapping[str, Any], settings: StoreSettings | None = None
) -> None:
    client, _, _ = connect(settings)
    for key, value in tags.items():
        text = str(value)
        if len(text) > _MAX_TAG:
            text = text[: _MAX_TAG - 3] + "..."
        client.set_model_version_tag(model_name(task), version, key, text)  # type: ignore[attr-defined]


def tag_run(run_id: str, tags: Mapping[str, Any], settings: StoreSettings | None = None) -> None:
    """Tags on an existing (possibly finished) run."""
    client, _, _ = connect(settings)
    DecisionRun(run_id, client).set_tags(tags)


def version_run_id(task: str, version: str, settings: StoreSettings | None = None) -> str:
    client, _, _ = connect(settings)
    return str(client.get_model_version(model_name(task), version).run_id or "")  # type: ignore[attr-defined]


def reference_profile(run_id: str, settings: StoreSettings | None = None) -> dict[str, Any] | None:
    """The feature profile logged by a training run, or None (runs logged before it existed)."""
    from mlflow.exceptions import MlflowException

    client, _, _ = connect(settings)
    with scratch_dir("profile") as tmp:
        try:
            local = client.download_artifacts(run_id, REFERENCE_PROFILE_ARTIFACT, str(tmp))  # type: ignore[attr-defined]
        except (MlflowException, OSError) as err:
            logger.warning("run %s has no %s: %s", run_id, REFERENCE_PROFILE_ARTIFACT, err)
            return None
        data: dict[str, Any] = json.loads(Path(local).read_text())
    return data


class DecisionRun:
    """A run logged through the client only (no fluent active run), so the training job can
    start its own runs while this one is open."""

    def __init__(self, run_id: str, client: Any) -> None:
        self.run_id = run_id
        self.client = client

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value)[:_MAX_TAG])

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_metrics(self, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, 0) for k, v in values.items() if v == v]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_dict(self, data: Mapping[str, Any], path: str) -> None:
        self.client.log_dict(self.run_id, dict(data), path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def log_figure(self, figure: Figure, path: str) -> None:
        self.client.log_figure(self.run_id, figure, path)


@contextmanager
def start_decision_run(
    task: str,
    *,
    run_name: str,
    tags: Mapping[str, Any],
    settings: StoreSettings | None = None,
) -> Iterator[DecisionRun]:
    """A run in the task's experiment; FINISHED on success, FAILED when the body raises."""
    client, _, root = connect(settings)
    exp = experiment_id(client, task, root)
    run = client.create_run(  # type: ignore[attr-defined]
        exp,
        run_name=run_name,
        tags={**{k: str(v) for k, v in tags.items()}, "git_commit": git_commit()},
    )
    decision = DecisionRun(run.info.run_id, client)
    try:
        yield decision
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")  # type: ignore[attr-defined]
        raise
    client.set_terminated(run.info.run_id, "FINISHED")  # type: ignore[attr-defined]
