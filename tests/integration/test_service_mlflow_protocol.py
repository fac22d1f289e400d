"""/invocations speaks MLflow's scoring protocol, as MLflow's own code writes and reads it.

Payloads are built by ``mlflow.models.convert_input_example_to_serving_input`` (and by hand for
the formats it does not write), checked by ``mlflow.models.validate_serving_input`` against the
logged model, and the answers compared with the pyfunc's and with ``mlflow models serve`` on the
same registered model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from metapredict import __version__, registry
from metapredict.predictor import Predictor
from serving.app import create_app
from serving.settings import ServingSettings
from tests.servers import free_port, stop_process_group, wait_http_ok
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictors(trained_store: TrainedStore) -> dict[str, Predictor]:
    return {task: registry.load(task, "champion", trained_store.settings) for task in TASKS}


@pytest.fixture(scope="module")
def client(trained_store: TrainedStore, predictors: dict[str, Predictor]) -> Iterator[TestClient]:
    settings = ServingSettings(
        tracking_uri=trained_store.settings.tracking_uri,
        artifact_root=trained_store.settings.artifact_root,
        poll_seconds=0,
        api_key=None,
        admin_api_key=None,
    )
    app = create_app(
        settings,
        loader=lambda task, alias, s: predictors[task],
        version_probe=lambda task, alias, s: predictors[task].info.version,
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def frame(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    """Five resected patients as a user's frame: the feature columns, missing values as NaN."""
    from metapredict import schema

    rows = simulated_cohort[simulated_cohort["stage"] != "IV"].head(5)
    out = rows[list(schema.feature_columns())].reset_index(drop=True)
    out.loc[1, "age_years"] = np.nan
    return out


def _model_uri(store: TrainedStore, task: str) -> str:
    return f"models:/metapredict-{task}@champion"


def _payloads(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(content type, body) of one request per format of the protocol."""
    from mlflow.models import convert_input_example_to_serving_input

    records = json.loads(frame.to_json(orient="records"))
    columns = json.loads(frame.to_json(orient="columns"))
    columnar = {c: list(v.values()) for c, v in columns.items()}
    split = convert_input_example_to_serving_input(frame)
    assert split is not None and "dataframe_split" in json.loads(split)
    return {
        "dataframe_split": ("application/json", split),
        "dataframe_records": ("application/json", json.dumps({"dataframe_records": records})),
        "inputs": ("application/json", json.dumps({"inputs": records})),
        "inputs-columnar": ("application/json", json.dumps({"inputs": columnar})),
        "instances": ("application/json", json.dumps({"instances": records})),
        "params": (
            "application/json",
            json.dumps({"dataframe_records": records, "params": {"anything": 1}}),
        ),
        "csv": ("text/csv", frame.to_csv(index=False)),
    }


def _predictions(answer: Any) -> pd.DataFrame:
    return pd.DataFrame(answer["predictions"])


@pytest.mark.parametrize("task", TASKS)
def test_every_format_gets_the_pyfunc_answer(
    client: TestClient, mlflow_store: TrainedStore, frame: pd.DataFrame, task: str
) -> None:
    from mlflow.models import validate_serving_input

    payloads = _payloads(frame)
    expected = validate_serving_input(
        _model_uri(mlflow_store, task), payloads["dataframe_split"][1]
    )
    expected = pd.DataFrame(expected).reset_index(drop=True)
    for name, (content_type, body) in payloads.items():
        response = client.post(
            f"/invocations?task={task}", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 200, (name, response.text)
        got = _predictions(response.json())
        assert list(got.columns) == list(expected.columns), name
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6, err_msg=name)


def test_ping_health_and_version(client: TestClient) -> None:
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ready"}
    version = client.get("/version")
    assert version.status_code == 200 and version.text == __version__


ERRORS = [
    ("neither-format", "application/json", b'{"rows": []}', 422, "INVALID_PARAMETER_VALUE"),
    ("two-formats", "application/json", b'{"inputs": [], "instances": []}', 422, None),
    ("malformed", "application/json", b'{"inputs": [', 400, "MALFORMED_REQUEST"),
    ("bad-csv-cell", "text/csv", b"age_years\nsixty\n", 422, "INVALID_PARAMETER_VALUE"),
    ("no-content-type", None, b'{"inputs": []}', 415, "BAD_REQUEST"),
    ("form", "application/x-www-form-urlencoded", b"a=1", 415, "BAD_REQUEST"),
    ("latin-1", "application/json; charset=latin-1", b'{"inputs": []}', 415, "BAD_REQUEST"),
    (
        "duplicate-key",
        "application/json",
        b'{"inputs": [], "inputs": []}',
        422,
        "INVALID_PARAMETER_VALUE",
    ),
    ("params-not-object", "application/json", b'{"inputs": [], "params": 3}', 422, None),
]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_invocations_errors_have_mlflows_shape(
    client: TestClient, content_type: str | None, body: bytes, status: int, code: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert isinstance(answer["message"], str) and answer["message"]
    assert answer["error_code"] == (code or "INVALID_PARAMETER_VALUE")


def test_every_other_error_has_the_services_shape(client: TestClient) -> None:
    for method, path in (
        ("GET", "/nowhere"),
        ("GET", "/v1/predict/tropism"),
        ("PUT", "/v1/models"),
    ):
        response = client.request(method, path)
        assert response.status_code in {404, 405}
        body = response.json()
        assert set(body) == {"message"} and "/docs" in body["message"]
    refused = client.post(
        "/v1/predict/tropism", content=b"{}", headers={"content-type": "text/csv"}
    )
    assert refused.status_code == 415
    assert set(refused.json()) == {"message"}
    assert "application/json" in refused.json()["message"]
    ping = client.post("/ping")
    assert ping.status_code == 405 and ping.json()["error_code"] == "BAD_REQUEST"


# --- the same answers as `mlflow models serve` -------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_serve(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``mlflow models serve`` on the tropism champion, on a free 127.0.0.1 port."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": trained_store.settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": trained_store.settings.tracking_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
    }
    mlflow = shutil.which("mlflow", path=bin_dir) or "mlflow"
    log = (tmp_path_factory.mktemp("mlflow-serve") / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            mlflow,
            "models",
            "serve",
            "-m",
            _model_uri(trained_store, "tropism"),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http_ok(f"{base}/ping", 120, process)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{error}\n{Path(log.name).read_text()[-3000:]}") from None
        yield base
    finally:
        stop_process_group(process)
        log.close()


def test_the_same_answers_as_mlflow_models_serve(
    client: TestClient, mlflow_serve: str, frame: pd.DataFrame
) -> None:
    """Every format MLflow's server scores gets the same predictions here; the service also
    scores the formats MLflow 3.17's server refuses for this model (``inputs`` and
    ``instances``, which it hands the pyfunc as a dict of arrays, not a frame; CSV, whose
    parser cannot type the ``Any`` numeric fields)."""
    theirs_refused = []
    reasons = {}
    for name, (content_type, body) in _payloads(frame).items():
        headers = {"content-type": content_type}
        theirs = httpx.post(
            f"{mlflow_serve}/invocations", content=body, headers=headers, timeout=60
        )
        ours = client.post("/invocations", content=body, headers=headers)
        assert ours.status_code == 200, (name, ours.text)
        if theirs.status_code != 200:
            theirs_refused.append(name)
            reasons[name] = theirs.text[:300]
            continue
        np.testing.assert_allclose(
            _predictions(ours.json()).to_numpy(),
            _predictions(theirs.json()).to_numpy(),
            rtol=1e-6,
            err_msg=name,
        )
    # MLflow's server also refuses CSV for this model (the next test shows why). Ours scores it.
    assert "csv" in theirs_refused, "MLflow now scores CSV here: compare it, update the docs"
    assert set(theirs_refused) <= {"inputs", "inputs-columnar", "instances", "csv"}, reasons
    for path in ("/ping", "/health", "/version"):
        assert httpx.get(f"{mlflow_serve}{path}").status_code == client.get(path).status_code
    # a request neither can score: both refuse it, in MLflow's error shape
    bad = json.dumps({"rows": []})
    headers = {"content-type": "application/json"}
    theirs = httpx.post(f"{mlflow_serve}/invocations", content=bad, headers=headers)
    ours = client.post("/invocations", content=bad, headers=headers)
    assert theirs.status_code >= 400 and ours.status_code >= 400
    assert {"error_code", "message"} <= set(theirs.json())
    assert {"error_code", "message"} <= set(ours.json())


def test_csv_mlflow_models_serve_refuses_ours_scores_as_mlflow_scores_the_same_rows(
    mlflow_store: TrainedStore, client: TestClient, mlflow_serve: str, frame: pd.DataFrame
) -> None:
    """MLflow 3.17's scoring server reads CSV with ``pd.read_csv(dtype=schema.pandas_types())``,
    and ``Schema.pandas_types()`` raises unless every input is a plain ``DataType``. The
    signature declares the numeric fields ``Any``, because no ``DataType`` takes both integers
    and fractions through ``pyfunc``: ``double`` refuses an int64 column ("Can not safely
    convert int64 to float64", unless every value is 0 or 1), ``long`` refuses float64 (and its
    JSON path truncates 54.5 to 54). So MLflow's own server cannot score CSV for a model that
    takes the README's integer patient. Ours takes the same CSV and answers as MLflow's server
    answers the same rows sent as JSON."""
    from mlflow.models import get_model_info
    from mlflow.types.schema import AnyType

    from metapredict.registry.pyfunc import numeric_features

    signature = get_model_info(_model_uri(mlflow_store, "tropism")).signature
    assert signature is not None and signature.inputs is not None
    types = {spec.name: spec.type for spec in signature.inputs.inputs}
    assert all(isinstance(types[name], AnyType) for name in numeric_features())

    csv = frame.to_csv(index=False)
    headers = {"content-type": "text/csv"}
    theirs = httpx.post(f"{mlflow_serve}/invocations", content=csv, headers=headers, timeout=60)
    assert theirs.status_code == 400, theirs.text
    assert "some of the inputs types are not DataType" in theirs.json()["message"]

    ours = client.post("/invocations", content=csv, headers=headers)
    assert ours.status_code == 200, ours.text
    split = frame.to_json(orient="split", index=False)
    as_json = httpx.post(
        f"{mlflow_serve}/invocations",
        content=json.dumps({"dataframe_split": json.loads(split)}),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert as_json.status_code == 200, as_json.text
    np.testing.assert_allclose(
        _predictions(ours.json()).to_numpy(), _predictions(as_json.json()).to_numpy(), rtol=1e-6
    )


def test_no_mlflow_data_type_takes_integers_and_fractions_through_pyfunc(tmp_path: Path) -> None:
    """Why the signature says ``Any`` (and so why MLflow's server cannot read CSV for it): with
    MLflow 3.17, a ``double`` field refuses an int64 column (the README's ``age_years: 54``,
    built into a DataFrame by pandas), a ``long`` field refuses fractions, and only ``Any``
    takes both. If MLflow ever accepts int64 for ``double``, this fails: then declare the
    numeric fields ``double``, and MLflow's server will score CSV too."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    with warnings.catch_warnings():  # "add type hints": not the point here
        warnings.simplefilter("ignore", UserWarning)

        class EchoAge(mlflow.pyfunc.PythonModel):
            # no type hints: MLflow would build its own signature from them
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return model_input[["age_years"]].astype(float)

    integers = pd.DataFrame({"age_years": [54, 61]})
    fractions = pd.DataFrame({"age_years": [54.5, 61.0]})
    outputs = Schema([ColSpec("double", "age_years")])
    accepted = {}
    for name, kind in (("double", "double"), ("long", "long"), ("Any", AnyType())):
        path = tmp_path / name
        signature = ModelSignature(inputs=Schema([ColSpec(kind, "age_years")]), outputs=outputs)
        with warnings.catch_warnings():  # "add type hints", "no input example": not the point
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(str(path), python_model=EchoAge(), signature=signature)
        model = mlflow.pyfunc.load_model(str(path))
        accepted[name] = set()
        for label, rows in (("integers", integers), ("fractions", fractions)):
            try:
                model.predict(rows)
            except MlflowException as err:
                assert "Can not safely convert" in str(err), err
            else:
                accepted[name].add(label)
    assert accepted == {
        "double": {"fractions"},
        "long": {"integers"},
        "Any": {"integers", "fractions"},
    }
