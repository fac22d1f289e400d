"""Promotion: a compare-and-set of the ``champion`` alias under an exclusive lock.

Two retraining jobs may finish at the same moment, on one machine or on two. Each evaluated its
challenger against the champion it saw at the start; at promotion time it takes an exclusive
lock that every promoter of that store shares, re-reads the champion, and moves the alias only
if the champion is still the version it evaluated against. Moving the alias is one registry
write and the last step of a job: a job killed before it leaves the champion untouched.

The lock depends on the store (:func:`registry_lock`):

- SQLite (one machine): ``fcntl.flock`` on a file next to the database.
- PostgreSQL (``postgresql://``, jobs with database access): a session-level advisory lock
  (``pg_try_advisory_lock``) in that database, keyed by the model name. PostgreSQL releases it
  when the holder's connection ends, so a killed job never leaves it behind.
- A tracking server (``http(s)://``, jobs that only reach the server): a lock object the
  server itself arbitrates. Creating a registered model is atomic in the server's database (the
  name is its primary key; a second create fails with ``RESOURCE_ALREADY_EXISTS``), whichever
  server process or replica handles the request, so the lock is the registered model
  ``<model>.promotion-lock``, created to acquire and deleted to release. It is held for well
  under a second. A job killed inside that window leaves it behind; the next promoter then
  waits :data:`LOCK_TIMEOUT_S` and fails with an error naming the lock and how to remove it,
  rather than guess that its holder is dead (a lease that others may break would let two jobs
  promote when the holder is merely slow).

Also here: moving a version's aliases to another version (:func:`move_aliases`, for a converted
version), the retraining job's decision run (an MLflow run created with the client, so it
can stay open while the training job runs its own fluent runs), version tags, and reading a
training run's row-free feature profile (the drift reference).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from metapredict.registry.store import (
    CHALLENGER,
    CHAMPION,
    REFERENCE_PROFILE_ARTIFACT,
    ModelNotFoundError,
    connect,
    experiment_id,
    model_name,
    scratch_dir,
    store_kind,
)
from metapredict.registry.tracking import git_commit
from metapredict.settings import StoreSettings, get_store_settings, sqlite_path

logger = logging.getLogger(__name__)

#: MLflow limits model-version tag values; longer values are cut with an ellipsis.
_MAX_TAG = 4000
#: How long a promoter waits for another one's lock (promotion itself takes well under 1 s).
LOCK_TIMEOUT_S = 120.0
#: Suffix of the registered model that is the promotion lock on a tracking server.
SERVER_LOCK_SUFFIX = ".promotion-lock"
#: Pause between attempts to take a busy PostgreSQL or server lock.
_RETRY_S = 0.1


class PromotionLockTimeoutError(TimeoutError):
    """Another promoter held the registry lock for longer than the timeout."""


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
def registry_lock(
    settings: StoreSettings | None = None,
    *,
    name: str = "",
    timeout: float = LOCK_TIMEOUT_S,
) -> Iterator[None]:
    """Exclusive lock shared by every process promoting ``name`` in this store, on any host
    that reaches the store (one file lock per SQLite store; per model on PostgreSQL and on a
    tracking server)."""
    settings = settings or get_store_settings()
    uri = settings.resolved_tracking_uri()
    kind = store_kind(uri)
    if kind == "postgresql":
        with advisory_lock(uri, f"metapredict-promotion:{name}", timeout=timeout):
            yield
    elif kind == "http":
        client, _, _ = connect(settings)
        with server_lock(client, name, timeout=timeout):
            yield
    else:
        with file_lock(lock_path(settings)):
            yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), released when the block ends
    or the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def advisory_key(label: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a label."""
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(uri: str, label: str, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock on ``label`` in the database at ``uri``.

    Held on a connection of its own for the duration of the block; PostgreSQL releases it when
    that connection ends, also when the process dies.
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    key = advisory_key(label)
    engine = sa.create_engine(uri, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                if time.monotonic() > deadline:
                    raise PromotionLockTimeoutError(
                        f"another promotion held the PostgreSQL advisory lock {key} "
                        f"({label}) for over {timeout:.0f} s; try again when it has finished"
                    )
                time.sleep(_RETRY_S)
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


def _lock_owner(client: Any, lock_name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(lock_name).tags)
    except MlflowException:
        return None


@contextmanager
def server_lock(client: Any, name: str, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """The registered model ``<name>.promotion-lock`` on the tracking server as a mutex."""
    from mlflow.exceptions import MlflowException

    lock_name = f"{name}{SERVER_LOCK_SUFFIX}"
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                lock_name,
                tags={
                    "owner": token,
                    "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                description=f"metapredict promotion lock for {name}: held while a job moves "
                "the champion alias (normally under a second)",
            )
            break
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
            owner = _lock_owner(client, lock_name)
            if owner is not None and owner.get("owner") == token:
                break  # our own create, retried by the client after a lost answer
        if time.monotonic() > deadline:
            owner = _lock_owner(client, lock_name) or {}
            raise PromotionLockTimeoutError(
                f"the promotion lock '{lock_name}' on the tracking server has been held for "
                f"over {timeout:.0f} s (by {owner.get('owner', '?')} since "
                f"{owner.get('acquired_at', '?')}); if no retraining job is running, a job "
                f"was killed while promoting: delete the registered model '{lock_name}' "
                "(MLflow UI, or MlflowClient().delete_registered_model) and run the job again"
            )
        time.sleep(_RETRY_S)
    try:
        yield
    finally:
        if (_lock_owner(client, lock_name) or {}).get("owner") == token:
            client.delete_registered_model(lock_name)


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
    with registry_lock(settings, name=name):
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


@dataclass(frozen=True)
class VersionRecord:
    """A registered version's aliases (``champion`` first), tags and training run."""

    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str


def version_record(task: str, version: str, settings: StoreSettings | None = None) -> VersionRecord:
    """The registry's record of ``version``; :class:`ModelNotFoundError` when there is none."""
    from mlflow.exceptions import MlflowException

    client, uri, _ = connect(settings)
    name = model_name(task)
    try:
        found = client.get_model_version(name, version)  # type: ignore[attr-defined]
    except MlflowException:
        raise ModelNotFoundError(f"no version {version} of model '{name}' in {uri}") from None
    aliases = sorted(found.aliases or (), key=lambda alias: (alias != CHAMPION, alias))
    return VersionRecord(tuple(aliases), dict(found.tags or {}), str(found.run_id or ""))


def move_aliases(
    task: str, old: str, new: str, aliases: Sequence[str], settings: StoreSettings | None = None
) -> tuple[list[str], list[str]]:
    """Point each of ``aliases`` at version ``new`` if it still names ``old`` (``champion``
    through :func:`promote_if_unchanged`, the others under the same lock). Returns the aliases
    moved and those left, which had moved on meanwhile."""
    client, _, _ = connect(settings)
    name = model_name(task)
    moved: list[str] = []
    left: list[str] = []
    for alias in aliases:
        if alias == CHAMPION:
            done = promote_if_unchanged(task, new, old, settings).promoted
        else:
            with registry_lock(settings, name=name):
                done = _alias_version(client, name, alias) == old
                if done:
                    client.set_registered_model_alias(name, alias, new)  # type: ignore[attr-defined]
        (moved if done else left).append(alias)
    return moved, left


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
