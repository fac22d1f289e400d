"""Where the MLflow store lives. Built in functions (never at import) and injected."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout holding pyproject.toml (editable install), else the working directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "metapredict").is_dir():
            return parent
    return Path.cwd()


def default_tracking_uri() -> str:
    return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


#: ``sqlite:///<database>``, with or without a driver (``sqlite+pysqlite:///``).
_SQLITE_URI = re.compile(r"sqlite(\+\w+)?:///(?P<rest>.*)", re.DOTALL)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, as SQLAlchemy (so MLflow) opens it.

    Percent escapes are decoded and a query string (``?timeout=...``) is dropped. None for any
    other URI, and for SQLite URIs that name no file here: an in-memory database, or a SQLite
    ``file:`` URI (``?uri=true``) whose options SQLite itself reads.
    """
    match = _SQLITE_URI.fullmatch(uri)
    if match is None:
        return None
    database, _, query = match["rest"].partition("?")
    if database in ("", ":memory:") or "uri=true" in query.lower():
        return None
    return Path(unquote(database))


class StoreSettings(BaseSettings):
    """``METAPREDICT_TRACKING_URI`` (else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///<repo>/mlruns/mlflow.db``) and the artifact root (``METAPREDICT_ARTIFACT_ROOT``,
    default ``artifacts/`` beside the SQLite file). ``METAPREDICT_DIRECT_READ=false`` makes
    loading always go through MLflow's client, never read a local SQLite registry directly."""

    model_config = SettingsConfigDict(env_prefix="METAPREDICT_", extra="ignore")

    tracking_uri: str = ""
    artifact_root: str = ""
    direct_read: bool = True

    def resolved_tracking_uri(self) -> str:
        # Under `mlflow run`, MLflow passes its own store as MLFLOW_TRACKING_URI: use it too.
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()

    def resolved_artifact_root(self) -> Path:
        if self.artifact_root:
            return Path(self.artifact_root)
        database = sqlite_path(self.resolved_tracking_uri())
        if database is not None:
            return database.parent / "artifacts"
        return project_root() / "mlruns" / "artifacts"


def get_store_settings() -> StoreSettings:
    return StoreSettings()
