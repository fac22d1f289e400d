"""Loading a registered model natively (no pyfunc on the hot path).

Loading is two steps: :func:`fetch` asks the registry which version an alias names and finds
that version's predictor artifact, and :func:`open_fetched` reads it (no MLflow): JSON and
LightGBM model text, checked against the SHA-256 recorded at registration
(:mod:`metapredict.registry.artifact`; nothing is unpickled). :func:`load` does both, and every
loader (the service, its start-up prefetch, ``metapredict predict``) goes through these two.

Versions registered before the JSON format hold a pickle (``predictor.joblib``): every loader
refuses them, with a message naming the retrain and the one-off conversion commands
(:mod:`metapredict.legacy_conversion`, the only code that unpickles, never in a server).

A local SQLite store with local artifacts is read directly
(:mod:`metapredict.registry.direct_read`, no MLflow import, the artifact opened in place); any
other store goes through MLflow's client, which downloads the artifact. When MLflow's client is
needed, a server's start-up runs the first step in a child process
(:mod:`metapredict.registry.fetch`) while it imports its own stack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metapredict.registry.direct_read import LocalVersion, lookup
from metapredict.registry.store import (
    CHAMPION,
    LEGACY_PREDICTOR_FILE,
    PREDICTOR_ARTIFACT,
    ModelNotFoundError,
    connect,
    legacy_refusal,
    model_name,
    model_not_found,
    scratch_dir,
)
from metapredict.settings import StoreSettings, get_store_settings

if TYPE_CHECKING:
    from metapredict.predictor import Predictor

logger = logging.getLogger(__name__)


#: The model-version tag with the SHA-256 of ``predictor.json`` (set at registration).
DIGEST_TAG = "predictor_sha256"


class ModelArtifactError(RuntimeError):
    """A registered version whose predictor artifact is refused (the message says why)."""


@dataclass(frozen=True)
class FetchedModel:
    """A registered version's predictor artifact at ``predictor_path`` (downloaded, or the
    folder in a local artifact store), with the digest recorded at registration.
    ``legacy``: an old pickled predictor (``predictor_path`` is the file)."""

    task: str
    name: str
    version: str
    alias: str
    run_id: str
    predictor_path: str
    metrics: dict[str, float] = field(default_factory=dict)
    predictor_sha256: str = ""
    legacy: bool = False
    #: "direct" (local SQLite read without MLflow) or "mlflow client: <why not direct>"
    read_via: str = ""


#: What reading through MLflow's client costs the process (measured on a serving process).
_CLIENT_COST = "about 85 MB more memory and 1-3 s per first call"
_fallbacks_logged: set[str] = set()


def _via_client(task: str, reason: str) -> str:
    """``read_via`` for MLflow's client, logged once per process and reason."""
    via = f"mlflow client: {reason}"
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        logger.warning(
            "reading the registry through MLflow's client (%s) because %s", _CLIENT_COST, reason
        )
    return via


def _version_by_alias(client: Any, task: str, alias: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name(task), alias)
    except MlflowException as err:
        raise model_not_found(task, alias, uri) from err


def current_version(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> str:
    """The version number the alias points at (cheap; used to poll for a new champion)."""
    settings = settings or get_store_settings()
    local = lookup(task, alias, settings)
    if isinstance(local, LocalVersion):
        return local.version
    _via_client(task, local)
    client, uri, _ = connect(settings)
    return str(_version_by_alias(client, task, alias, uri).version)


def find_local(task: str, alias: str, settings: StoreSettings) -> FetchedModel | str:
    """The alias's predictor where it lies in a directly readable store, or why MLflow's
    client must be asked."""
    local = lookup(task, alias, settings)
    if not isinstance(local, LocalVersion):
        return local
    return FetchedModel(
        task=task,
        name=model_name(task),
        version=local.version,
        alias=alias,
        run_id=local.run_id,
        predictor_path=str(local.predictor_path),
        metrics=dict(local.metrics),
        predictor_sha256=local.predictor_sha256,
        legacy=local.legacy,
        read_via="direct",
    )


def fetch(task: str, alias: str, settings: StoreSettings | None, dest: Path) -> FetchedModel:
    """Resolve ``models:/metapredict-<task>@<alias>`` and find its predictor.

    A store read directly names the folder where it lies in the store; otherwise MLflow's
    client downloads it into ``dest``. An old pickled version is refused without reading it
    (found in a directly read store, refused when opened).
    """
    settings = settings or get_store_settings()
    found = find_local(task, alias, settings)
    if isinstance(found, FetchedModel):
        return found
    read_via = _via_client(task, found)
    client, uri, _ = connect(settings)
    version = _version_by_alias(client, task, alias, uri)
    return _download(client, task, version, alias, dest, read_via, legacy_ok=False)


def fetch_version(
    task: str,
    version: str,
    settings: StoreSettings | None,
    dest: Path,
    *,
    legacy_ok: bool = False,
) -> FetchedModel:
    """Find version ``version`` of ``metapredict-<task>`` through MLflow's client and download
    its predictor into ``dest`` (a pinned version, e.g. to re-score a cohort with the model a
    report used; aliases are the normal way in). An old pickled version is refused without
    reading it, unless ``legacy_ok`` (the one-off conversion, which alone unpickles it)."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_store_settings()
    name = model_name(task)
    client: Any
    client, uri, _ = connect(settings)
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        raise ModelNotFoundError(
            f"no version {version} of model '{name}' in {uri}; list the versions with "
            "`metapredict ui` or use --alias champion"
        ) from None
    return _download(client, task, found, "", dest, "mlflow client: a pinned version", legacy_ok)


def _download(
    client: Any,
    task: str,
    version: Any,
    alias: str,
    dest: Path,
    read_via: str,
    legacy_ok: bool,
) -> FetchedModel:
    """Download a registered version's predictor (the JSON format; an old pickle only with
    ``legacy_ok``: refused otherwise, without reading it)."""
    import mlflow

    name = model_name(task)
    digest = str((version.tags or {}).get(DIGEST_TAG, ""))
    legacy = not digest and not _has_predictor_folder(client, name, str(version.version))
    if legacy and not legacy_ok:
        raise legacy_refusal(task, str(version.version))
    dest.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=(
            f"models:/{name}/{version.version}/artifacts/"
            f"{LEGACY_PREDICTOR_FILE if legacy else PREDICTOR_ARTIFACT}"
        ),
        dst_path=str(dest),
    )
    run_metrics: dict[str, float] = {}
    if version.run_id:
        run_metrics = dict(client.get_run(version.run_id).data.metrics)
    return FetchedModel(
        task=task,
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=str(version.run_id or ""),
        predictor_path=str(local),
        metrics=run_metrics,
        predictor_sha256=digest,
        legacy=legacy,
        read_via=read_via,
    )


def _has_predictor_folder(client: Any, name: str, version: str) -> bool:
    """Whether the version's model holds ``artifacts/predictor/`` (the JSON format)."""
    import mlflow

    try:
        entries = mlflow.artifacts.list_artifacts(
            artifact_uri=f"models:/{name}/{version}/artifacts"
        )
    except Exception:  # the download that follows says what is wrong
        return True
    return any(e.path.rstrip("/").endswith(f"artifacts/{PREDICTOR_ARTIFACT}") for e in entries)


def open_fetched(fetched: FetchedModel) -> Predictor:
    """Read a fetched predictor (checking its digests) and attach where it came from.

    Raises :class:`ModelArtifactError` for an artifact that is refused (changed, incomplete,
    malformed, registered without a digest) and
    :class:`~metapredict.registry.store.LegacyModelError` for an old pickle.
    """
    from metapredict.predictor import ModelInfo
    from metapredict.registry.artifact import ArtifactError, read_predictor

    what = f"{fetched.name} version {fetched.version}"
    if fetched.legacy:
        raise legacy_refusal(fetched.task, fetched.version)
    if not fetched.predictor_sha256:
        raise ModelArtifactError(
            f"{what} has no {DIGEST_TAG} tag, so its files cannot be checked, and is "
            "refused: it was not registered by metapredict train. Retrain it: "
            f"metapredict train {fetched.task}"
        )
    try:
        predictor = read_predictor(Path(fetched.predictor_path), fetched.predictor_sha256)
    except ArtifactError as err:
        raise ModelArtifactError(f"{what} is refused: {err}") from None
    if predictor.task != fetched.task:
        raise ModelArtifactError(f"{what} is not a {fetched.task} predictor")
    predictor.info = ModelInfo(
        name=fetched.name,
        version=fetched.version,
        alias=fetched.alias,
        run_id=fetched.run_id,
        metrics=dict(fetched.metrics),
        read_via=fetched.read_via,
    )
    logger.info("loaded %s version %s (@%s)", fetched.name, fetched.version, fetched.alias)
    return predictor


def load(task: str, alias: str = CHAMPION, settings: StoreSettings | None = None) -> Predictor:
    """The native predictor of ``models:/metapredict-<task>@<alias>``, with its metadata."""
    settings = settings or get_store_settings()
    with scratch_dir("model") as tmp:
        return open_fetched(fetch(task, alias, settings, Path(tmp)))


def load_version(task: str, version: str, settings: StoreSettings | None = None) -> Predictor:
    """The native predictor of ``models:/metapredict-<task>/<version>``, with its metadata."""
    settings = settings or get_store_settings()
    with scratch_dir("model") as tmp:
        return open_fetched(fetch_version(task, version, settings, Path(tmp)))
