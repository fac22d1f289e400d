"""A registered model is data: no pickle anywhere in a version's artifacts is ever executed.

A pickle whose ``__reduce__`` creates a marker file is dropped wherever a loader might look (the
old ``predictor.joblib`` path, MLflow's ``python_model.pkl``, inside the predictor folder). The
service's loader (direct read and MLflow's client), the start-up prefetch child,
``mlflow.pyfunc.load_model`` and the running service load the real model and never create the
marker. A version saved in the old pickled format is refused with a message naming the retrain
and the one-off conversion commands; ``metapredict convert-legacy --trust-pickle`` registers it
again as data; a changed file is refused with the reason.
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
from typer.testing import CliRunner, Result

from metapredict import registry, schema
from metapredict.cli import app as cli_app
from metapredict.registry.direct_read import read_version
from metapredict.registry.fetch import Prefetch
from metapredict.registry.loader import load_version
from metapredict.registry.store import LegacyModelError, connect, model_name
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from serving.app import create_app
from serving.settings import ServingSettings
from tests.integration.cli_process import run_cli
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


def test_an_old_pickled_version_is_refused_with_the_retrain_and_convert_commands(
    store: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    version = _legacy_version(store, _evil_pickle(marker))
    for settings in (store, store.model_copy(update={"direct_read": False})):
        with pytest.raises(LegacyModelError, match=f"version {version} was saved as a pickle") as e:
            registry.load(TASK, "champion", settings)
        assert f"metapredict train {TASK}" in str(e.value)
        assert f"metapredict convert-legacy {TASK} --version {version} --trust-pickle" in str(
            e.value
        )

    settings = ServingSettings(**store.model_dump(), tasks=(TASK,), poll_seconds=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 503
        body = client.get("/v1/models").json()["models"][TASK]
        assert body["loaded"] is False
        assert f"metapredict train {TASK}" in body["last_reload"]["message"]
        assert str(tmp_path) not in json.dumps(body), "no local paths in responses"

    # The variable that once let every loader unpickle is not read any more.
    monkeypatch.setenv("METAPREDICT_ALLOW_PICKLE", "1")
    fresh = StoreSettings(tracking_uri=store.tracking_uri, artifact_root=store.artifact_root)
    with pytest.raises(LegacyModelError):
        registry.load(TASK, "champion", fresh)
    assert not marker.exists(), "a refused pickle was executed"

    # Converting it unpickles it, so it asks for --trust-pickle first.
    refused = _convert_in_process(store, version, trust=False)
    assert refused.exit_code == 2, refused.output
    assert "--trust-pickle" in refused.output and f"metapredict train {TASK}" in refused.output
    assert not marker.exists(), "a pickle was executed without --trust-pickle"

    # Trusting the file means unpickling it: this one runs its command, and as it holds no
    # predictor nothing is registered.
    trusted = run_cli(
        "convert-legacy", TASK, "--version", version, "--trust-pickle", settings=store
    )
    assert trusted.returncode == 1, trusted.stderr
    assert "does not hold a metapredict predictor" in trusted.stderr
    assert "Traceback" not in trusted.stderr
    assert marker.exists()
    assert _latest_version(store) == version


def _convert_in_process(settings: StoreSettings, version: str, *, trust: bool = True) -> Result:
    """``metapredict convert-legacy`` in this process: for the refusals, which stop before
    anything is unpickled (the conversions themselves run the real command in a subprocess)."""
    env = {
        "METAPREDICT_TRACKING_URI": settings.tracking_uri,
        "METAPREDICT_ARTIFACT_ROOT": settings.artifact_root,
    }
    args = ["convert-legacy", TASK, "--version", version, *(["--trust-pickle"] if trust else [])]
    return CliRunner(env=env).invoke(cli_app, args)


def _latest_version(settings: StoreSettings) -> str:
    client, _, _ = connect(settings)
    found = client.search_model_versions(f"name = '{model_name(TASK)}'")  # type: ignore[attr-defined]
    return str(max(int(v.version) for v in found))


def test_converting_an_old_version_registers_it_as_data_and_moves_its_aliases(
    store: StoreSettings,
) -> None:
    current = registry.load(TASK, "champion", store)
    version = _legacy_version(store, b"")
    legacy = _model_dir(store).parent / "old-format" / "artifacts" / "predictor.joblib"
    joblib.dump(current, legacy)
    client, _, _ = connect(store)
    name = model_name(TASK)
    client.set_registered_model_alias(name, "validated", version)  # type: ignore[attr-defined]
    training_run = client.get_model_version(name, version).run_id  # type: ignore[attr-defined]

    result = run_cli("convert-legacy", TASK, "--version", version, "--trust-pickle", settings=store)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    new = answer["new_version"]
    assert (answer["old_version"], int(new)) == (version, int(version) + 1)
    assert answer["aliases_moved"] == ["champion", "validated"]
    assert answer["aliases_left"] == []

    # The new version is data: every loader reads it, checked, and it answers as the pickle did.
    frame = _frame()
    for settings in (store, store.model_copy(update={"direct_read": False})):
        loaded = registry.load(TASK, "champion", settings)
        assert loaded.info.version == new
        np.testing.assert_array_equal(
            loaded.predict_batch(frame).to_numpy(), current.predict_batch(frame).to_numpy()
        )
    assert registry.load(TASK, "validated", store).info.version == new
    converted = client.get_model_version(name, new)  # type: ignore[attr-defined]
    assert converted.tags["converted_from_version"] == version
    assert converted.tags["predictor_sha256"]
    # ... of the same training run (its metrics and drift reference), which stays finished.
    assert converted.run_id == training_run
    assert client.get_run(training_run).info.status == "FINISHED"  # type: ignore[attr-defined]
    assert loaded.info.metrics == load_version(TASK, "1", store).info.metrics

    # The old version stays refused; converting it again or a JSON version is refused.
    assert client.get_model_version(name, version).tags["converted_to_version"] == new  # type: ignore[attr-defined]
    with pytest.raises(LegacyModelError):
        load_version(TASK, version, store)
    again = _convert_in_process(store, version)
    assert again.exit_code == 1 and f"version {new} holds it" in again.output, again.output
    json_one = _convert_in_process(store, "1")
    assert json_one.exit_code == 1 and "already stored in the JSON format" in json_one.output
    missing = _convert_in_process(store, "99")
    assert missing.exit_code == 1 and "no version 99 of model" in missing.output
    assert _latest_version(store) == new


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
