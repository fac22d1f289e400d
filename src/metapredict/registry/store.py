"""Connecting to the MLflow store (SQLite + local artifacts by default).

Three kinds of tracking URI are supported (:func:`store_kind`):

- ``sqlite:///...``: the embedded default; artifacts in a local folder (the artifact root);
- ``postgresql://...``: the shared database itself; artifacts in the artifact root, which
  every process using the store must see (a shared file system);
- ``http(s)://...``: an ``mlflow server``; artifacts go through the server (proxied artifact
  access, ``mlflow-artifacts:/``), so a client needs nothing but the URL.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from metapredict.settings import StoreSettings, get_store_settings, sqlite_path

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The native predictor inside the logged model's artifacts: the folder ``artifacts/predictor/``
#: (``predictor.json`` + LightGBM model text, :mod:`metapredict.registry.artifact`), also the
#: pyfunc flavour's artifact key.
PREDICTOR_ARTIFACT = "predictor"
#: Where models registered before the JSON format kept a pickled predictor (refused by every
#: loader; ``metapredict convert-legacy`` converts such a version once).
LEGACY_PREDICTOR_FILE = "predictor.joblib"
#: Row-free summary of a training run's features (drift reference), an artifact of the run.
REFERENCE_PROFILE_ARTIFACT = "reference/feature_profile.json"


class ModelNotFoundError(LookupError):
    """No model version carries the requested alias."""


class LegacyModelError(RuntimeError):
    """A version saved as a pickle (before the JSON format): refused by every loader."""


def legacy_refusal(task: str, version: str) -> LegacyModelError:
    return LegacyModelError(
        f"{model_name(task)} version {version} was saved as a pickle (predictor.joblib), which "
        f"can run code when loaded, and is refused. Retrain it (metapredict train {task}) or, if "
        "you trust every writer of this store, convert it once: metapredict convert-legacy "
        f"{task} --version {version} --trust-pickle"
    )


def model_name(task: str) -> str:
    return f"metapredict-{task}"


def model_not_found(task: str, alias: str, uri: str) -> ModelNotFoundError:
    """The error for a registry (at ``uri``) where no version of ``task``'s model has ``alias``."""
    return ModelNotFoundError(
        f"no model '{model_name(task)}' with alias '{alias}' in {uri}; "
        f"train one first: metapredict train {task}"
    )


#: Database stores this process has already created or checked (see :func:`_created_once`).
_CREATED: set[str] = set()
_CREATED_LOCK = threading.Lock()
#: SQLAlchemy dialects: stores whose tables MLflow creates and migrates from the client side.
_DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "mysql", "mssql"})


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
    with _created_once(uri, settings) as first:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # opens the tracking store
        if first:
            client.search_registered_models(max_results=1)  # opens the registry store
    return client, uri, root


@contextmanager
def _created_once(uri: str, settings: StoreSettings) -> Iterator[bool]:
    """Open a database store under the registry lock, the first time this process opens it.

    MLflow creates and migrates a database's tables when a process first opens it (a
    ``MlflowClient`` opens its tracking store at once, the registry store on first use); two
    processes doing that at once on an empty store race, and one fails ("Online migration
    expected to match one row", "duplicate column name"). Under the exclusive lock promotion
    uses, the first process creates the tables and the others find them. Yields whether the
    block runs under the lock (the first time for this store in this process). A tracking
    server (``http://``) creates its own tables: no lock.
    """
    from metapredict.registry.promotion import registry_lock

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in _DATABASE_SCHEMES or uri in _CREATED:
        yield False
        return
    with _CREATED_LOCK, registry_lock(settings):
        yield True
    _CREATED.add(uri)


def experiment_id(client: object, task: str, artifact_root: Path) -> str:
    """The experiment named after the task, created with artifacts under ``artifact_root``.

    On a tracking server the server chooses the location (its proxied artifact store), so
    that a client on another machine never writes to a path of its own file system.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    assert isinstance(client, MlflowClient)
    experiment = client.get_experiment_by_name(task)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        if store_kind(str(client.tracking_uri)) == "http":
            return str(client.create_experiment(task))
        location = (artifact_root / task).resolve().as_uri()
        return str(client.create_experiment(task, artifact_location=location))
    except MlflowException:
        # Another job created it between the lookup and the creation (two first jobs at once).
        experiment = client.get_experiment_by_name(task)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


# ------------------------------------------------------------------------------------------------
# Scratch folders

#: ``metapredict-<kind>-<pid>-<random>``: a scratch folder and the process that made it.
_SCRATCH_NAME = re.compile(r"metapredict-[a-z]+-(?P<pid>\d+)-")


def make_scratch_dir(kind: str) -> Path:
    """A new scratch folder in the temporary directory, named after ``kind`` and this process.

    The caller removes it (see :func:`scratch_dir`). Folders whose process has died without
    removing them (``kill -9``, power loss) are swept here, whenever a process makes one: no
    process can remove its folders when it is killed, so the next one does.
    """
    sweep_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"metapredict-{kind}-{os.getpid()}-"))


@contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A scratch folder (see :func:`make_scratch_dir`), removed when the block ends or fails."""
    path = make_scratch_dir(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_scratch(directory: Path | None = None) -> list[Path]:
    """Remove the scratch folders of processes that no longer run; return what was removed."""
    directory = directory or Path(tempfile.gettempdir())
    removed = []
    with suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = _SCRATCH_NAME.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            if _process_alive(int(match["pid"])):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
