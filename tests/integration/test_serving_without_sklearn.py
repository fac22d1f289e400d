"""Loading and serving a registered model need neither scikit-learn nor pickle (issue 19).

A child process (``no_sklearn_child.py``) makes ``sklearn``, ``joblib`` and ``cloudpickle``
unimportable and ``pickle.load``/``pickle.loads`` raise, then loads both champions of a trained
store with ``registry.loader.load`` and serves through the app factory the ``serve`` command
runs. Its predictions and the service's answers must equal, to the last bit, what this
(ordinary) process computes from the same store, and no blocked package may have been imported.
A second child loads the champions through MLflow's ``pyfunc.load_model`` (models-from-code)
with scikit-learn and joblib blocked (MLflow imports cloudpickle itself) and pickle tripped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from metapredict import schema
from metapredict.registry.loader import load
from metapredict.simulator import default_config, simulate_cohort
from serving.app import create_app
from tests.integration.cli_process import ROOT, cli_env
from tests.integration.no_sklearn_child import predictions_of
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("no_sklearn_child.py")
TASKS = ("tropism", "dormancy")


def _records(trained_store: TrainedStore) -> dict[str, list[dict[str, Any]]]:
    """Per task, 20 simulated patients the champion accepts (its cancer types and stages)."""
    cohort = simulate_cohort(200, 11, default_config())
    out = {}
    for task in TASKS:
        predictor = load(task, settings=trained_store.settings)
        frame = cohort[list(schema.feature_columns())].astype(object)
        for column, allowed in predictor.categories.items():
            frame = frame[frame[column].isin(allowed) | frame[column].isna()]
        rows = frame.head(20).where(pd.notna(frame.head(20)), None)
        out[task] = [{k: v for k, v in r.items()} for r in rows.to_dict("records")]
        assert len(out[task]) == 20
    return out


def _expected(trained_store: TrainedStore, patients: dict[str, list[dict[str, Any]]]) -> Any:
    """What the child computes, computed here (scikit-learn importable)."""
    predictions = {
        task: predictions_of(load(task, settings=trained_store.settings), records)
        for task, records in patients.items()
    }
    served: dict[str, Any] = {}
    with TestClient(create_app()) as client:
        served["ready"] = client.get("/health/ready").status_code
        for task, records in patients.items():
            answer = client.post(f"/v1/predict/{task}", json={"patients": records[:2]})
            served[task] = {"status": answer.status_code, "body": answer.json()}
    return predictions, served


def _child(
    trained_store: TrainedStore, patients: dict[str, list[dict[str, Any]]], *args: str
) -> Any:
    done = subprocess.run(
        [sys.executable, str(CHILD), *args],
        input=json.dumps({"patients": patients}),
        env=cli_env(trained_store.settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_champions_load_and_serve_without_sklearn_or_pickle(
    trained_store: TrainedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = trained_store.settings
    monkeypatch.setenv("METAPREDICT_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("METAPREDICT_ARTIFACT_ROOT", settings.artifact_root)
    patients = _records(trained_store)
    child = _child(trained_store, patients)

    # the blocker really blocks: the test could fail
    assert child["blocked"] == {
        "sklearn": True,
        "joblib": True,
        "cloudpickle": True,
        "pickle.loads": True,
    }
    assert "sklearn" in sys.modules, "this process has scikit-learn: the comparison is fair"

    predictions, served = _expected(trained_store, patients)
    for task in TASKS:
        assert child["predictions"][task] == predictions[task], f"{task} predictions differ"
    assert served["ready"] == child["served"]["ready"] == 200
    for task in TASKS:
        assert child["served"][task]["status"] == 200, child["served"][task]
        assert child["served"][task] == served[task], f"{task} answers differ"
        assert len(child["served"][task]["body"]["patients"]) == 2
    # nothing scikit-learn, joblib or cloudpickle was imported in the child, to the end
    assert child["imported"] == []


def test_the_pyfunc_flavour_loads_without_sklearn_or_pickle(mlflow_store: TrainedStore) -> None:
    import mlflow

    from metapredict.registry.store import model_name

    patients = _records(mlflow_store)
    child = _child(mlflow_store, patients, "pyfunc")
    assert child["blocked"] == {"sklearn": True, "joblib": True, "pickle.loads": True}
    for task in TASKS:
        model = mlflow.pyfunc.load_model(f"models:/{model_name(task)}@champion")
        expected = model.predict(pd.DataFrame(patients[task])).to_numpy().tolist()
        assert child["pyfunc"][task] == expected, f"{task} pyfunc predictions differ"
    assert child["imported"] == []
