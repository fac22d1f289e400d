"""Reading a local SQLite registry directly gives what MLflow's client gives, or steps aside."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest

from metapredict import registry
from metapredict.registry.direct_read import KNOWN_SCHEMA_REVISIONS, read_version
from metapredict.registry.loader import fetch
from metapredict.registry.store import connect, model_name
from metapredict.settings import StoreSettings, sqlite_path
from tests.support import TrainedStore, store_settings

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")


def test_the_installed_mlflow_schema_is_one_the_reader_knows() -> None:
    """Fails when a new MLflow moves its SQL schema: re-check the queries, then add the head."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    head = ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head()
    assert head in KNOWN_SCHEMA_REVISIONS


@pytest.mark.parametrize("task", TASKS)
def test_direct_read_matches_mlflow_client(
    task: str, trained_store: TrainedStore, tmp_path: Path
) -> None:
    settings = trained_store.settings
    through_mlflow = fetch(
        task, "champion", settings.model_copy(update={"direct_read": False}), tmp_path
    )
    local = read_version(task, "champion", settings)

    assert local is not None
    assert local.version == through_mlflow.version
    assert local.run_id == through_mlflow.run_id
    assert local.metrics == pytest.approx(through_mlflow.metrics, nan_ok=True)
    assert local.metrics, "the run's metrics are read too"
    assert local.predictor_sha256 == through_mlflow.predictor_sha256 != ""
    assert not local.legacy and not through_mlflow.legacy
    downloaded = Path(through_mlflow.predictor_path)
    assert sorted(p.relative_to(downloaded) for p in downloaded.rglob("*")) == sorted(
        p.relative_to(local.predictor_path) for p in local.predictor_path.rglob("*")
    )
    manifest = "predictor.json"
    assert (local.predictor_path / manifest).read_bytes() == (downloaded / manifest).read_bytes()
    assert Path(through_mlflow.predictor_path).is_relative_to(tmp_path)  # really downloaded


@pytest.fixture
def store_copy(trained_store: TrainedStore, tmp_path: Path) -> StoreSettings:
    """A writable copy of the trained store (database and artifacts)."""
    shutil.copytree(_db_file(trained_store.settings).parent, tmp_path / "store")
    return store_settings(tmp_path / "store")


def _db_file(settings: StoreSettings) -> Path:
    path = sqlite_path(settings.tracking_uri)
    assert path is not None
    return path


def _execute(settings: StoreSettings, sql: str) -> None:
    """One statement, committed, on the store's database (outside MLflow)."""
    with contextlib.closing(sqlite3.connect(_db_file(settings))) as db, db:
        db.execute(sql)


def test_direct_read_follows_alias_changes_made_through_mlflow(store_copy: StoreSettings) -> None:
    from mlflow import MlflowClient

    client, _, _ = connect(store_copy)
    assert isinstance(client, MlflowClient)
    name = model_name("tropism")
    first = client.get_model_version(name, "1")
    second = client.create_model_version(name, first.source, run_id=first.run_id)

    client.set_registered_model_alias(name, "champion", second.version)
    local = read_version("tropism", "champion", store_copy)
    assert local is not None and local.version == str(second.version)
    assert registry.current_version("tropism", "champion", store_copy) == str(second.version)

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(registry.ModelNotFoundError, match="train one first: metapredict train"):
        read_version("tropism", "champion", store_copy)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("UPDATE alembic_version SET version_num = 'f00dfeed0000'", "unknown schema"),
        ("UPDATE model_versions SET storage_location = 's3://bucket/model'", "remote artifacts"),
        ("UPDATE model_versions SET status = 'PENDING_REGISTRATION'", "not ready"),
        (
            "UPDATE model_versions SET storage_location = 'file:///nowhere/model/artifacts'",
            "predictor file missing",
        ),
        ("DROP TABLE latest_metrics", "a table missing"),
        ("DELETE FROM runs", "the version's run is gone (MLflow's client fails on it)"),
    ],
)
def test_direct_read_steps_aside_when_it_cannot_be_sure(
    store_copy: StoreSettings, change: str, why: str
) -> None:
    assert read_version("tropism", "champion", store_copy) is not None
    _execute(store_copy, change)
    assert read_version("tropism", "champion", store_copy) is None, why


def test_a_deleted_version_is_not_served(store_copy: StoreSettings) -> None:
    """MLflow keeps a deleted version's row, marked; an alias left on it names nothing."""
    _execute(store_copy, "UPDATE model_versions SET current_stage = 'Deleted_Internal'")
    assert read_version("tropism", "champion", store_copy) is None
    with pytest.raises(registry.ModelNotFoundError):
        registry.load("tropism", "champion", store_copy)


def test_artifacts_found_from_the_source_when_no_storage_location(
    store_copy: StoreSettings,
) -> None:
    before = read_version("tropism", "champion", store_copy)
    assert before is not None
    _execute(
        store_copy,
        "UPDATE model_versions SET source = storage_location, storage_location = NULL",
    )
    after = read_version("tropism", "champion", store_copy)
    assert after is not None
    assert after.predictor_path == before.predictor_path


def test_percent_escapes_in_the_store_uri_are_decoded_as_mlflow_does(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    """SQLAlchemy opens ``sqlite:///my%20store/mlflow.db`` as ``my store/mlflow.db``."""
    shutil.copytree(_db_file(trained_store.settings).parent, tmp_path / "my store")
    db = tmp_path / "my store" / "mlflow.db"
    settings = store_settings(tmp_path / "my store").model_copy(
        update={"tracking_uri": f"sqlite:///{quote(str(db))}"}
    )
    assert "%20" in settings.tracking_uri
    local = read_version("tropism", "champion", settings)
    assert local is not None
    through_mlflow = settings.model_copy(update={"direct_read": False})
    assert local.version == registry.current_version("tropism", "champion", through_mlflow)


def test_direct_read_steps_aside_when_asked_or_for_other_stores(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = trained_store.settings
    assert read_version("tropism", "champion", settings) is not None
    off = settings.model_copy(update={"direct_read": False})
    assert read_version("tropism", "champion", off) is None
    other = settings.model_copy(update={"tracking_uri": "postgresql://localhost/mlflow"})
    assert read_version("tropism", "champion", other) is None
    # MLflow resolves its reserved alias itself (the highest version), not from a stored row.
    assert read_version("tropism", "latest", settings) is None
    assert registry.current_version("tropism", "latest", settings) == "1"
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert read_version("tropism", "champion", settings) is None
    monkeypatch.delenv("MLFLOW_ENABLE_WORKSPACES")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    assert read_version("tropism", "champion", settings) is None


def test_direct_read_from_the_environment_switch(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAPREDICT_DIRECT_READ", "false")
    settings = StoreSettings(
        tracking_uri=trained_store.settings.tracking_uri,
        artifact_root=trained_store.settings.artifact_root,
    )
    assert settings.direct_read is False
    assert read_version("tropism", "champion", settings) is None
