"""A registered model is data: no pickle anywhere in a version's artifacts is ever executed.

A pickle whose ``__reduce__`` creates a marker file is dropped wherever a loader might look (the
old ``predictor.joblib`` path, MLflow's ``python_model.pkl``, inside the predictor folder). The
service's loader (direct read and MLflow's client), the start-up prefetch child,
``mlflow.pyfunc.load_model`` and the running service load the real model and never create the
marker. A version saved in the old pickled format is refused with a message naming the retrain
command, unless ``METAPREDICT_ALLOW_PICKLE=1``; a changed file is refused with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shlex
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from metapredict import registry, schema
from metapredict.registry.direct_read import read_version
from metapredict.registry.fetch import Prefetch
from metapredict.registry.store import LegacyModelError, connect, model_name
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from serving.app import create_app
from serving.settings import ServingSettings
from tests.support import TrainedStore, store_settings

pytestmark = pytest.mark.slow

TASK = "dormancy"


class _RunsCommand:
    """Unpickling this runs a shell command (what an attacker would plant)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_RunsCommand(f"touch {shlex.quote(str(marker))}"))


def _frame() -> Any:
    """Resected patients (stages I-III: the dormancy model's)."""
    cohort = simulate_cohort(40, 7, default_config())
    resected = cohort[cohort["stage"].astype(object) != "IV"]
    return resected[list(schema.feature_columns())].reset_index(drop=True)


#: Columns of MLflow's tables that hold artifact locations (rewritten in a copied store).
_LOCATIONS = {
    "model_versions": ("storage_location", "source"),
    "logged_models": ("artifact_location",),
    "runs": ("artifact_uri",),
    "experiments": ("artifact_location",),
}


@pytest.fixture
def store(trained_store: TrainedStore, tmp_path: Path) -> StoreSettings:
    """A copy of the trained store (database and artifacts) whose locations point into the
    copy: the tests below write into a version's artifacts."""
    source = Path(trained_store.settings.tracking_uri.removeprefix("sqlite:///")).parent
    target = tmp_path / "store"
    shutil.copytree(source, target)
    with contextlib.closing(sqlite3.connect(target / "mlflow.db")) as db, db:
        for table, columns in _LOCATIONS.items():
            for column in columns:
                db.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                    (source.as_uri(), target.as_uri()),
                )
    copied = store_settings(target)
    assert str(target) in str(_model_dir(copied))
    return copied


def _model_dir(settings: StoreSettings) -> Path:
    """The champion's MLflow model folder in the (local) artifact store."""
    local = read_version(TASK, "champion", settings)
    assert local is not None
    return local.predictor_path.parent.parent


def _plant(model_dir: Path, marker: Path) -> list[Path]:
    """The evil pickle wherever a loader might look for a pickle."""
    evil = _evil_pickle(marker)
    places = [
        model_dir / "artifacts" / "predictor.joblib",
        model_dir / "python_model.pkl",
        model_dir / "model.pkl",
        model_dir / "artifacts" / "predictor" / "predictor.joblib",
        model_dir / "artifacts" / "predictor" / "boosters" / "extra.pkl",
    ]
    for place in places:
        place.write_bytes(evil)
    return places


def test_the_marker_detects_an_unpickled_pickle(tmp_path: Path) -> None:
    """The check below can fail: unpickling the planted file does create the marker."""
    marker = tmp_path / "marker"
    pickle.loads(_evil_pickle(marker))
    assert marker.exists()


def test_no_loader_executes_a_pickle_planted_in_the_artifacts(
    store: StoreSettings, tmp_path: Path
) -> None:
    import mlflow

    marker = tmp_path / "marker"
    _plant(_model_dir(store), marker)
    expected = registry.load(TASK, "champion", store)
    frame = _frame()
    through_mlflow = store.model_copy(update={"direct_read": False})
    for settings in (store, through_mlflow):
        loaded = registry.load(TASK, "champion", settings)
        np.testing.assert_array_equal(
            loaded.predict_batch(frame).to_numpy(), expected.predict_batch(frame).to_numpy()
        )
    with Prefetch([TASK], "champion", through_mlflow) as prefetch:
        assert prefetch.child_started
        assert prefetch.load(TASK, "champion", through_mlflow).info.version == "1"

    _, uri, _ = connect(store)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name(TASK)}@champion")
    np.testing.assert_allclose(
        pyfunc.predict(frame).to_numpy(), expected.predict_batch(frame).to_numpy(), atol=1e-12
    )

    settings = ServingSettings(**store.model_dump(), tasks=(TASK,), poll_seconds=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 200
    assert not marker.exists(), "a planted pickle was executed"


def _legacy_version(settings: StoreSettings, content: bytes) -> str:
    """A new version of the model in the old format: only ``artifacts/predictor.joblib``."""
    client, _, _ = connect(settings)
    old = _model_dir(settings).parent / "old-format"
    shutil.copytree(_model_dir(settings), old)
    shutil.rmtree(old / "artifacts" / "predictor")
    (old / "artifacts" / "predictor.joblib").write_bytes(content)
    first = client.get_model_version(model_name(TASK), "1")  # type: ignore[attr-defined]
    version = client.create_model_version(  # type: ignore[attr-defined]
        model_name(TASK), old.as_uri(), run_id=first.run_id
    )
    client.set_registered_model_alias(model_name(TASK), "champion", version.version)  # type: ignore[attr-defined]
    return str(version.version)


def test_an_old_pickled_version_is_refused_with_the_retrain_command(
    store: StoreSettings, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    version = _legacy_version(store, _evil_pickle(marker))
    for settings in (store, store.model_copy(update={"direct_read": False})):
        with pytest.raises(LegacyModelError, match=f"version {version} was saved as a pickle") as e:
            registry.load(TASK, "champion", settings)
        assert f"metapredict train {TASK}" in str(e.value)
        assert "METAPREDICT_ALLOW_PICKLE=1" in str(e.value)

    settings = ServingSettings(**store.model_dump(), tasks=(TASK,), poll_seconds=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 503
        body = client.get("/v1/models").json()["models"][TASK]
        assert body["loaded"] is False
        assert f"metapredict train {TASK}" in body["last_reload"]["message"]
        assert str(tmp_path) not in json.dumps(body), "no local paths in responses"
    assert not marker.exists(), "a refused pickle was executed"

    # Opting in means trusting the file: it is then unpickled (and this one runs its command).
    allowed = store.model_copy(update={"allow_pickle": True})
    with pytest.raises(Exception):  # noqa: B017 - os.system's return value is no predictor
        registry.load(TASK, "champion", allowed)
    assert marker.exists()


def test_opting_in_loads_an_old_pickled_version(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = registry.load(TASK, "champion", store)
    version = _legacy_version(store, b"")
    legacy = _model_dir(store).parent / "old-format" / "artifacts" / "predictor.joblib"
    joblib.dump(current, legacy)
    monkeypatch.setenv("METAPREDICT_ALLOW_PICKLE", "1")
    allowed = StoreSettings(tracking_uri=store.tracking_uri, artifact_root=store.artifact_root)
    assert allowed.allow_pickle
    for settings in (allowed, allowed.model_copy(update={"direct_read": False})):
        loaded = registry.load(TASK, "champion", settings)
        assert loaded.info.version == version
        frame = _frame()
        np.testing.assert_array_equal(
            loaded.predict_batch(frame).to_numpy(), current.predict_batch(frame).to_numpy()
        )


@pytest.mark.parametrize("direct_read", [True, False], ids=["direct-read", "mlflow-client"])
def test_a_changed_artifact_is_refused_with_the_reason(
    store: StoreSettings, direct_read: bool
) -> None:
    manifest = _model_dir(store) / "artifacts" / "predictor" / "predictor.json"
    document = json.loads(manifest.read_text())
    document["risk_cutoffs"] = [0.0, 0.0]
    manifest.write_text(json.dumps(document))
    settings = store.model_copy(update={"direct_read": direct_read})
    with pytest.raises(registry.ModelArtifactError, match="changed afterwards"):
        registry.load(TASK, "champion", settings)
