"""Where the store lives: SQLite URIs read the way SQLAlchemy (and so MLflow) reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from metapredict.registry.promotion import lock_path
from metapredict.settings import StoreSettings, sqlite_path


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////srv/store/mlflow.db",
        "sqlite:///relative/mlflow.db",
        "sqlite:////srv/my%20store/mlflow.db",
        "sqlite:////srv/what%3Fstore/mlflow.db",
        "sqlite:////srv/store/mlflow.db?timeout=20",
        "sqlite+pysqlite:////srv/store/mlflow.db",
    ],
)
def test_the_database_file_is_the_one_sqlalchemy_opens(uri: str) -> None:
    assert str(sqlite_path(uri)) == make_url(uri).database


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///file:/srv/store/mlflow.db?mode=ro&uri=true",
        "postgresql://localhost/mlflow",
        "mysql+pymysql://user@host/mlflow",
        "",
    ],
)
def test_no_file_for_other_stores_or_sqlite_without_one(uri: str) -> None:
    assert sqlite_path(uri) is None


def test_artifacts_and_the_promotion_lock_sit_beside_the_database() -> None:
    settings = StoreSettings(tracking_uri="sqlite:////srv/my%20store/mlflow.db?timeout=20")
    assert settings.resolved_artifact_root() == Path("/srv/my store/artifacts")
    assert lock_path(settings) == Path("/srv/my store/mlflow.db.registry.lock")
