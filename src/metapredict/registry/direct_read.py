"""Reading an alias straight from a local SQLite registry, without MLflow's client.

Asking MLflow's client which version ``metapredict-tropism@champion`` names costs about two
seconds in a fresh interpreter (importing MLflow, SQLAlchemy and Alembic, mapping the ORM, checking
the schema) to read a handful of rows. When the store is a local SQLite file with a schema
revision this module knows, and the version's artifacts are on the local disk,
:func:`read_version` reads those rows with :mod:`sqlite3`, read-only, in milliseconds.

Anything else (``METAPREDICT_DIRECT_READ=false``, another database, a schema revision this
module does not know, artifacts that are not local files, MLflow workspaces turned on, a version
still being created, MLflow's reserved alias ``latest``) returns ``None`` and the caller asks
MLflow's client as before. The queries mirror MLflow's own SQL store
(``get_model_version_by_alias``, ``get_model_version_download_uri`` and ``get_run``'s latest
metrics) in the default workspace; :data:`KNOWN_SCHEMA_REVISIONS` names the schema they were
written against, and a test fails when the installed MLflow's schema moves past it.

This is a deliberate exception to the house rule "ask the registry, do not reach into MLflow's
storage": it still resolves the alias through the registry's own tables (never a folder layout),
but without MLflow's client, and only reads: finding and loading champions (``metapredict
serve`` ready in about a third rather than half the time of ``mlflow models serve``,
``benchmarks/results/cold_start.md``) and the service's polling for a new one. Training,
registration and promotion write through MLflow's client.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from metapredict.registry.store import (
    LEGACY_PREDICTOR_FILE,
    PREDICTOR_ARTIFACT,
    model_name,
    model_not_found,
)
from metapredict.settings import StoreSettings, sqlite_path

logger = logging.getLogger(__name__)

#: Alembic revisions of MLflow's SQL store schema whose tables the queries below read
#: (the head of MLflow 3.17). Any other revision: ask MLflow's client.
KNOWN_SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
#: MLflow's workspace for stores without workspaces (``mlflow.utils.workspace_utils``).
DEFAULT_WORKSPACE = "default"
#: MLflow's ``current_stage`` for a deleted version kept in the table.
DELETED_STAGE = "Deleted_Internal"
#: MLflow's reserved alias for the highest version (resolved by MLflow, not stored as a row).
LATEST = "latest"
#: Seconds to wait for a writer (training registering a version) to release the database.
BUSY_TIMEOUT_S = 5.0


#: The model-version tag with the SHA-256 of the predictor's document
#: (:data:`metapredict.registry.artifact.DIGEST_TAG`; not imported: this module stays light).
DIGEST_TAG = "predictor_sha256"


@dataclass(frozen=True)
class LocalVersion:
    """The version an alias names, with its predictor on the local disk: the ``predictor``
    folder with the digest recorded at registration, or (``legacy``) an old pickle's path."""

    version: str
    run_id: str
    predictor_path: Path
    metrics: Mapping[str, float]
    predictor_sha256: str = ""
    legacy: bool = False


def _workspaces_in_use() -> bool:
    enabled = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower()
    return bool(os.environ.get("MLFLOW_WORKSPACE")) or enabled in {"1", "true", "yes"}


def _local_path(uri: str | None) -> Path | None:
    """A ``file:`` URI's path (None for any other scheme, or no URI)."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(parsed.path))


def _read(db: sqlite3.Connection, task: str, alias: str, uri: str) -> LocalVersion | str:
    # One read transaction: every SELECT below sees the same state of the store, even while a
    # training job or a promotion writes to it.
    db.execute("BEGIN")
    (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone() or (None,)
    if revision not in KNOWN_SCHEMA_REVISIONS:
        return f"MLflow schema revision {revision} is not one this reader knows"
    name = model_name(task)
    row = db.execute(
        "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ? "
        "AND workspace = ?",
        (name, alias, DEFAULT_WORKSPACE),
    ).fetchone()
    if row is None:
        raise model_not_found(task, alias, uri)
    version = row[0]
    row = db.execute(
        "SELECT run_id, status, storage_location, source FROM model_versions "
        "WHERE name = ? AND version = ? AND workspace = ? AND current_stage != ?",
        (name, version, DEFAULT_WORKSPACE, DELETED_STAGE),
    ).fetchone()
    if row is None or row[1] != "READY":
        return f"version {version} is not ready"
    run_id, _, storage_location, source = row
    artifacts = _local_path(storage_location or source)
    if artifacts is None:
        return "the artifacts are not on the local disk"
    predictor = artifacts / "artifacts" / PREDICTOR_ARTIFACT
    legacy = not predictor.is_dir()
    if legacy:
        predictor = artifacts / "artifacts" / LEGACY_PREDICTOR_FILE
        if not predictor.is_file():
            return "the version's predictor files are not where its artifacts should be"
    row = db.execute(
        "SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = ? "
        "AND workspace = ?",
        (name, version, DIGEST_TAG, DEFAULT_WORKSPACE),
    ).fetchone()
    digest = str(row[0]) if row is not None and row[0] else ""
    metrics: dict[str, float] = {}
    if run_id:
        if db.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() is None:
            return "the version's run is missing"  # MLflow's client fails on it: let it say so
        for key, value, is_nan in db.execute(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)
        ):
            metrics[key] = math.nan if is_nan else float(value)
    return LocalVersion(
        str(version), str(run_id or ""), predictor, metrics, predictor_sha256=digest, legacy=legacy
    )


def read_version(task: str, alias: str, settings: StoreSettings) -> LocalVersion | None:
    """The version ``models:/metapredict-<task>@<alias>`` names, read without MLflow.

    Returns None when this store cannot be read directly (ask MLflow's client instead); raises
    :class:`~metapredict.registry.store.ModelNotFoundError` when the registry has no such alias.
    """
    found = lookup(task, alias, settings)
    return found if isinstance(found, LocalVersion) else None


def lookup(task: str, alias: str, settings: StoreSettings) -> LocalVersion | str:
    """:func:`read_version`, or instead of None the reason to ask MLflow's client (no local
    paths in it: it is shown in ``/v1/models``)."""
    if not settings.direct_read:
        return "METAPREDICT_DIRECT_READ is off"
    if _workspaces_in_use():
        return "MLflow workspaces are in use"
    if alias.lower() == LATEST:
        return f"MLflow resolves the alias {LATEST!r} itself"
    uri = settings.resolved_tracking_uri()
    path = sqlite_path(uri)
    if path is None:
        return "the tracking store is not a local SQLite file"
    if "?" in uri:  # URI options (timeouts, modes) are MLflow's to apply
        return "the SQLite URI has options for MLflow to apply"
    try:
        if not path.is_file():
            return "the SQLite file does not exist yet"
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except (sqlite3.Error, OSError) as err:
        logger.debug("cannot open %s read-only: %s", path, err)
        return f"the SQLite file cannot be opened read-only ({type(err).__name__})"
    try:
        return _read(db, task, alias, uri)
    except (sqlite3.Error, OSError, ValueError) as err:
        # a table or column this schema lacks, a locked or unreadable file, a malformed URI
        logger.debug("cannot read the registry in %s directly: %s", path, err)
        return f"the registry cannot be read directly ({type(err).__name__}: {err})"
    finally:
        db.close()
