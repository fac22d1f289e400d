"""The service end to end (lifespan running, models from a real MLflow store): what it answers.

The module's service loads both champions of the session's trained store through the registry,
as ``metapredict serve`` does. Variants that only differ in settings (API keys, readiness) get
the already loaded predictors injected, so they start in milliseconds.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from metapredict import metrics, schema
from metapredict.models.boosting import PREDICT_THREADS
from metapredict.models.fast_rows import FAST_ROWS
from metapredict.predictor import RISK_GROUPS, Predictor
from metapredict.registry import ModelNotFoundError
from serving.app import create_app
from serving.request_model import example_patient
from serving.routes import HEADLINE_METRICS, INLINE_ROWS
from serving.settings import ServingSettings
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")
ADMIN_KEY = "admin-secret-for-tests"
TOP = 5


def _settings(store: TrainedStore, **overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {
        "tracking_uri": store.settings.tracking_uri,
        "artifact_root": store.settings.artifact_root,
        "poll_seconds": 0,
        "top_features": TOP,
        "api_key": None,
        "admin_api_key": ADMIN_KEY,
        "max_patients": 1000,
        "pandera_batch_rows": 200,
    }
    return ServingSettings(**(values | overrides))


@pytest.fixture(scope="module")
def client(trained_store: TrainedStore) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(trained_store))) as c:
        yield c


@pytest.fixture(scope="module")
def predictors(client: TestClient) -> dict[str, Predictor]:
    """The predictors the module's service loaded from the registry."""
    return dict(client.app.state.store.current.predictors)  # type: ignore[attr-defined]


def _injected(predictors: dict[str, Predictor]) -> dict[str, Any]:
    """create_app keyword arguments serving ``predictors`` without the registry."""
    return {
        "loader": lambda task, alias, settings: predictors[task],
        "version_probe": lambda task, alias, settings: predictors[task].info.version,
    }


def _patient_rows(cohort: pd.DataFrame, n: int, prefix: str = "pt") -> list[dict[str, Any]]:
    """``n`` resected (not stage IV) simulated patients as JSON-ready dicts, with ids; missing
    inputs (extras, stage, age) are left out."""
    rows = []
    resected = cohort[cohort["stage"].astype(object) != schema.METASTATIC_STAGE]
    for i, (_, row) in enumerate(resected.head(n).iterrows()):
        out: dict[str, Any] = {"id": f"{prefix}-{i}"}
        for name in schema.feature_columns():
            value = row[name]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out[name] = value if isinstance(value, str) else float(value)
        rows.append(out)
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "id"} for r in rows])
    for name in schema.extra_columns():
        frame[name] = frame.get(name, pd.Series(np.nan, index=frame.index)).astype(float)
    return frame


@pytest.fixture(scope="module")
def patients(simulated_cohort: pd.DataFrame) -> list[dict[str, Any]]:
    rows = _patient_rows(simulated_cohort, 6)
    assert any(len(r) < len(schema.feature_columns()) + 1 for r in rows), "want a missing extra"
    return rows


def _check_top(top: list[dict[str, Any]], contributions: pd.Series, record: dict[str, Any]) -> None:
    """Top features: the k largest |contribution|, signed, in order, with the input value."""
    assert len(top) == TOP
    names = [t["feature"] for t in top]
    assert len(set(names)) == TOP
    assert set(names) <= set(schema.feature_columns())
    sizes = [abs(t["contribution"]) for t in top]
    assert sizes == sorted(sizes, reverse=True)
    np.testing.assert_allclose(
        [t["contribution"] for t in top], contributions[names].to_numpy(), atol=1e-9
    )
    rest = contributions.drop([*names, "bias"]).abs()
    assert min(sizes) >= rest.max() - 1e-12
    for t in top:
        assert t["value"] == record.get(t["feature"])


# --- health and readiness -------------------------------------------------------------------


def test_live_and_ready_once_models_are_loaded(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_empty_store_is_not_ready_and_predictions_are_503(tmp_store: Any) -> None:
    settings = ServingSettings(
        tracking_uri=tmp_store.tracking_uri, artifact_root=tmp_store.artifact_root, poll_seconds=0
    )
    with TestClient(create_app(settings)) as c:
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["missing"] == list(TASKS)
        answer = c.post("/v1/predict/tropism", json={"patients": [example_patient()]})
        assert answer.status_code == 503
        assert "metapredict train tropism" in answer.json()["message"]
        models = c.get("/v1/models").json()["models"]
        for task in TASKS:
            assert models[task]["loaded"] is False
            assert models[task]["last_reload"]["status"] == "missing"


def test_ready_turns_200_when_the_models_arrive(
    trained_store: TrainedStore, predictors: dict[str, Predictor]
) -> None:
    registered: set[str] = set()

    def probe(task: str, alias: str, settings: ServingSettings) -> str:
        if task not in registered:
            raise ModelNotFoundError(f"no {task} model yet")
        return predictors[task].info.version

    app = create_app(
        _settings(trained_store),
        loader=lambda task, alias, settings: predictors[task],
        version_probe=probe,
    )
    admin = {"X-API-Key": ADMIN_KEY}
    with TestClient(app) as c:
        assert c.get("/health/ready").status_code == 503
        registered.add("tropism")
        assert c.post("/v1/admin/reload", headers=admin).status_code == 200
        ready = c.get("/health/ready")
        assert (ready.status_code, ready.json()["missing"]) == (503, ["dormancy"])
        body = {"patients": [example_patient()]}
        assert c.post("/v1/predict/tropism", json=body).status_code == 200
        assert c.post("/v1/predict/dormancy", json=body).status_code == 503
        registered.add("dormancy")
        assert c.post("/v1/admin/reload", headers=admin).status_code == 200
        assert c.get("/health/ready").status_code == 200
        assert c.post("/v1/predict/dormancy", json=body).status_code == 200


# --- predictions ------------------------------------------------------------------------------


def test_tropism_answer(
    client: TestClient,
    predictors: dict[str, Predictor],
    patients: list[dict[str, Any]],
    trained_store: TrainedStore,
) -> None:
    response = client.post("/v1/predict/tropism", json={"patients": patients})
    assert response.status_code == 200, response.text
    body = response.json()
    registered = trained_store.outcomes["tropism"].registered
    assert body["model"] == {
        "name": "metapredict-tropism",
        "version": registered.version,
        "alias": "champion",
        "run_id": registered.run_id,
    }
    assert body["schema_version"] == schema.SCHEMA_VERSION

    predictor = predictors["tropism"]
    frame = _frame(patients)
    expected = predictor.predict(frame)
    batch = predictor.predict_batch(frame)
    contributions = predictor.contributions(frame)
    assert body["interval_level"] == 0.9
    assert [p["id"] for p in body["patients"]] == [r["id"] for r in patients]
    for i, (answer, record) in enumerate(zip(body["patients"], patients, strict=True)):
        probabilities = answer["probabilities"]
        assert list(probabilities) == list(schema.sites())
        np.testing.assert_allclose(
            list(probabilities.values()), expected.iloc[i].to_numpy(), atol=1e-9
        )
        assert list(answer["intervals"]) == list(schema.sites())
        for site, (lower, upper) in answer["intervals"].items():
            assert 0.0 <= lower <= probabilities[site] <= upper <= 1.0
            assert [lower, upper] == pytest.approx(
                [batch.loc[i, f"{site}_lower"], batch.loc[i, f"{site}_upper"]], abs=1e-9
            )
        ranked = [probabilities[s] for s in answer["ranked_sites"]]
        assert sorted(answer["ranked_sites"]) == sorted(schema.sites())
        assert ranked == sorted(ranked, reverse=True)
        assert set(answer["top_features"]) == set(schema.sites())
        for site, top in answer["top_features"].items():
            _check_top(top, contributions[site].iloc[i], record)
        assert isinstance(answer["warnings"], list)


def test_dormancy_answer(
    client: TestClient,
    predictors: dict[str, Predictor],
    patients: list[dict[str, Any]],
    trained_store: TrainedStore,
) -> None:
    response = client.post("/v1/predict/dormancy", json={"patients": patients})
    assert response.status_code == 200, response.text
    body = response.json()
    registered = trained_store.outcomes["dormancy"].registered
    assert body["model"]["name"] == "metapredict-dormancy"
    assert (body["model"]["version"], body["model"]["run_id"]) == (
        registered.version,
        registered.run_id,
    )
    assert body["model"]["alias"] == "champion"
    assert body["schema_version"] == schema.SCHEMA_VERSION

    predictor = predictors["dormancy"]
    frame = _frame(patients)
    expected = predictor.predict(frame)
    batch = predictor.predict_batch(frame)
    assert body["interval_level"] == 0.9
    contributions = predictor.contributions(frame)["relapse_hazard_60"]
    assert predictor.risk_cutoffs is not None
    for i, (answer, record) in enumerate(zip(body["patients"], patients, strict=True)):
        assert answer["id"] == record["id"]
        risks = answer["cumulative_risk"]
        assert list(risks) == [str(h) for h in metrics.HORIZONS] == ["36", "60", "120"]
        values = list(risks.values())
        assert values == sorted(values)
        assert all(0.0 <= v <= 1.0 for v in values)
        np.testing.assert_allclose(
            values, expected.loc[i, ["risk_36", "risk_60", "risk_120"]].to_numpy(), atol=1e-9
        )
        late = answer["late_relapse_probability"]
        assert 0.0 <= late <= 1.0
        assert late == pytest.approx(expected.loc[i, "late_relapse"], abs=1e-9)
        intervals = answer["cumulative_risk_intervals"]
        assert list(intervals) == list(risks)
        for horizon, (lower, upper) in intervals.items():
            assert 0.0 <= lower <= risks[horizon] <= upper <= 1.0
            assert [lower, upper] == pytest.approx(
                [batch.loc[i, f"risk_{horizon}_lower"], batch.loc[i, f"risk_{horizon}_upper"]],
                abs=1e-9,
            )
        lower, upper = answer["late_relapse_interval"]
        assert 0.0 <= lower <= late <= upper <= 1.0
        group = RISK_GROUPS[int(np.searchsorted(predictor.risk_cutoffs, risks["120"], "right"))]
        assert answer["risk_group"] == group
        _check_top(answer["top_features"], contributions.iloc[i], record)


def test_risk_groups_span_low_to_high(client: TestClient, simulated_cohort: pd.DataFrame) -> None:
    rows = _patient_rows(simulated_cohort, 150)
    body = client.post("/v1/predict/dormancy", json={"patients": rows}).json()
    assert {p["risk_group"] for p in body["patients"]} == set(RISK_GROUPS)


@pytest.mark.parametrize("task", TASKS)
def test_warning_when_an_input_lies_outside_the_training_range(
    client: TestClient, predictors: dict[str, Predictor], task: str
) -> None:
    ranges = predictors[task].feature_ranges
    name, value = next(
        (c, (ranges[c][1] + schema.column_info(c).maximum) / 2)  # type: ignore[operator]
        for c in schema.extra_columns()
        if c in ranges and ranges[c][1] < (schema.column_info(c).maximum or -math.inf)
    )
    inside = {**example_patient(), name: (ranges[name][0] + ranges[name][1]) / 2}
    outside = {**inside, name: value}
    answer = client.post(f"/v1/predict/{task}", json={"patients": [inside, outside]}).json()
    ok, flagged = answer["patients"]
    assert not [w for w in ok["warnings"] if w.startswith(f"{name}=")]
    (warning,) = [w for w in flagged["warnings"] if w.startswith(f"{name}=")]
    assert "outside the range seen in training" in warning


def test_same_answer_from_the_pandera_batch_path(
    trained_store: TrainedStore,
    predictors: dict[str, Predictor],
    patients: list[dict[str, Any]],
    client: TestClient,
) -> None:
    batch = create_app(_settings(trained_store, pandera_batch_rows=1), **_injected(predictors))
    with TestClient(batch) as c:
        for task in TASKS:
            via_pandera = c.post(f"/v1/predict/{task}", json={"patients": patients})
            via_pydantic = client.post(f"/v1/predict/{task}", json={"patients": patients})
            assert via_pandera.status_code == via_pydantic.status_code == 200
            assert via_pandera.json() == via_pydantic.json()


# --- /v1/models, /metrics ---------------------------------------------------------------------


def test_every_prediction_uses_one_lightgbm_thread_setting(
    client: TestClient, simulated_cohort: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small batches run inline and large ones in the thread pool, at the same time under load:
    LightGBM's thread count is process-wide, so every call must set the same one."""
    seen: list[int] = []
    real_predict = lgb.Booster.predict

    def predict(self: lgb.Booster, data: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(int(kwargs.get("num_threads", 0)))
        return real_predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", predict)
    for n in (FAST_ROWS + 4, INLINE_ROWS + 8):  # past the single-row path; inline, then pooled
        rows = _patient_rows(simulated_cohort, n)
        for task in TASKS:
            assert client.post(f"/v1/predict/{task}", json={"patients": rows}).status_code == 200
        frame = _frame(rows)
        body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        assert client.post("/invocations?task=tropism", json=body).status_code == 200
    assert seen and set(seen) == {PREDICT_THREADS}


def test_models_endpoint(client: TestClient, trained_store: TrainedStore) -> None:
    body = client.get("/v1/models").json()
    assert body["schema_version"] == schema.SCHEMA_VERSION
    assert set(body["models"]) == set(TASKS)
    for task in TASKS:
        registered = trained_store.outcomes[task].registered
        model = body["models"][task]
        assert model["loaded"] is True
        assert (model["name"], model["version"], model["alias"], model["run_id"]) == (
            registered.name,
            registered.version,
            "champion",
            registered.run_id,
        )
        assert model["schema_version"] == schema.SCHEMA_VERSION
        assert model["training_metrics"]
        assert set(model["training_metrics"]) <= set(HEADLINE_METRICS)
        assert all(math.isfinite(v) for v in model["training_metrics"].values())
        assert model["last_reload"]["status"] == "loaded"
        assert model["last_reload"]["version"] == registered.version
    assert "test_macro_auroc" in body["models"]["tropism"]["training_metrics"]
    assert "test_harrell_c" in body["models"]["dormancy"]["training_metrics"]


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_latency_predictions_and_models(
    client: TestClient, patients: list[dict[str, Any]], predictors: dict[str, Predictor]
) -> None:
    before = _samples(client)
    client.post("/v1/predict/tropism", json={"patients": patients[:3]})
    client.post("/v1/predict/tropism", json={"patients": patients[:2]})
    client.post("/v1/predict/tropism", json={"patients": [{"stage": "IV"}]})
    client.post("/v1/predict/dormancy", json={"patients": patients[:4]})
    after = _samples(client)

    route = {"route": "/v1/predict/tropism", "method": "POST"}
    ok, bad = route | {"status": "200"}, route | {"status": "422"}
    for labels, n in ((ok, 2), (bad, 1)):
        for name in (
            "metapredict_http_requests_total",
            "metapredict_http_request_duration_seconds_count",
        ):
            assert _value(after, name, **labels) - _value(before, name, **labels) == n
        inf_bucket = labels | {"le": "+Inf"}
        grew = _value(after, "metapredict_http_request_duration_seconds_bucket", **inf_bucket)
        assert (
            grew - _value(before, "metapredict_http_request_duration_seconds_bucket", **inf_bucket)
            == n
        )
    for task, n in (("tropism", 5), ("dormancy", 4)):
        name = "metapredict_predictions_total"
        assert _value(after, name, task=task) - _value(before, name, task=task) == n
        p = predictors[task]
        info = {
            "task": task,
            "name": p.info.name,
            "version": p.info.version,
            "alias": "champion",
            "schema_version": schema.SCHEMA_VERSION,
        }
        assert _value(after, "metapredict_model_info", **info) == 1.0


# --- keys -------------------------------------------------------------------------------------


def test_api_key_guards_the_prediction_routes(
    trained_store: TrainedStore, predictors: dict[str, Predictor]
) -> None:
    app = create_app(_settings(trained_store, api_key="reader-key"), **_injected(predictors))
    body = {"patients": [example_patient()]}
    records = {"dataframe_records": [{k: v for k, v in example_patient().items() if k != "id"}]}
    with TestClient(app) as c:
        for path, payload in (
            ("/v1/predict/tropism", body),
            ("/v1/predict/dormancy", body),
            ("/invocations", records),
        ):
            assert c.post(path, json=payload).status_code == 401
            assert c.post(path, json=payload, headers={"X-API-Key": "wrong"}).status_code == 401
            good = c.post(path, json=payload, headers={"X-API-Key": "reader-key"})
            assert good.status_code == 200, good.text
        assert c.get("/health/ready").status_code == 200
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"X-API-Key": "reader-key"}).status_code == 200


def test_reload_needs_the_admin_key(
    client: TestClient, trained_store: TrainedStore, predictors: dict[str, Predictor]
) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    done = client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    assert done.status_code == 200
    assert {r["task"]: r["status"] for r in done.json()["results"]} == dict.fromkeys(
        TASKS, "unchanged"
    )
    closed = create_app(_settings(trained_store, admin_api_key=None), **_injected(predictors))
    with TestClient(closed) as c:
        refused = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
        assert refused.status_code == 403
        assert "METAPREDICT_ADMIN_API_KEY" in refused.json()["message"]


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_carries_the_schema_generated_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    example = {"patients": [example_patient()]}
    for task in TASKS:
        content = spec["paths"][f"/v1/predict/{task}"]["post"]["requestBody"]["content"]
        assert content["application/json"]["example"] == example
        patient = content["application/json"]["schema"]["properties"]["patients"]["items"]
        assert set(patient["properties"]) == {*schema.feature_columns(), "id"}
        answered = client.post(f"/v1/predict/{task}", json=example)
        assert answered.status_code == 200
    invocations = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(invocations["application/json"]["examples"]) == {
        "dataframe_split",
        "dataframe_records",
        "inputs",
        "instances",
    }
    for named in invocations["application/json"]["examples"].values():
        assert client.post("/invocations", json=named["value"]).status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert "/openapi.json" in docs.text


# --- /invocations matches MLflow's own pyfunc -------------------------------------------------


@pytest.fixture(scope="module")
def pyfunc_models(trained_store: TrainedStore) -> dict[str, Any]:
    mlflow.set_tracking_uri(trained_store.settings.tracking_uri)
    mlflow.set_registry_uri(trained_store.settings.tracking_uri)
    return {
        task: mlflow.pyfunc.load_model(f"models:/metapredict-{task}@champion") for task in TASKS
    }


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("protocol", ["dataframe_split", "dataframe_records"])
def test_invocations_returns_what_mlflow_pyfunc_returns(
    client: TestClient,
    pyfunc_models: dict[str, Any],
    simulated_cohort: pd.DataFrame,
    task: str,
    protocol: str,
) -> None:
    resected = simulated_cohort[simulated_cohort["stage"].astype(object) != "IV"]
    frame = resected.iloc[20:32][list(schema.feature_columns())].reset_index(drop=True)
    frame = frame.astype({c: float for c in schema.extra_columns()})
    assert frame[list(schema.extra_columns())].isna().any().any(), "want a missing extra"
    expected = pyfunc_models[task].predict(frame)

    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]
    if protocol == "dataframe_split":
        columns = list(frame.columns)
        payload: dict[str, Any] = {
            "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
        }
    else:
        payload = {"dataframe_records": rows}
    params = {"task": task} if task != "tropism" else {}
    response = client.post("/invocations", json=payload, params=params)
    assert response.status_code == 200, response.text
    predictions = pd.DataFrame(response.json()["predictions"])
    assert list(predictions.columns) == list(expected.columns)
    # every output, then each one's interval
    names = [c for c in expected.columns if not c.endswith(("_lower", "_upper"))]
    bounds = [f"{n}_{side}" for n in names for side in ("lower", "upper")]
    assert list(expected.columns) == [*names, *bounds]
    np.testing.assert_allclose(predictions.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)


# --- privacy ----------------------------------------------------------------------------------

SECRET_ID = "ZEBRA-7731-QX"
SECRET_VALUE = 1234.56789
SECRET_BAD_VALUE = 187.654321


def test_logs_never_contain_patient_rows(
    client: TestClient, caplog: pytest.LogCaptureFixture, simulated_cohort: pd.DataFrame
) -> None:
    for name in (None, "serving", "metapredict", "httpx", "fastapi", "starlette", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    patient = {**example_patient(), "id": SECRET_ID, "platelet_count": SECRET_VALUE}
    bad = {**patient, "age_years": SECRET_BAD_VALUE}
    batch = _patient_rows(simulated_cohort, 220, prefix=SECRET_ID)
    batch[7]["age_years"] = SECRET_BAD_VALUE

    truncated = json.dumps({"patients": [bad]}).encode()[:-3]
    answers = [
        client.post("/v1/predict/tropism", json={"patients": [patient]}),
        client.post("/v1/predict/dormancy", json={"patients": [patient, bad]}),
        client.post("/v1/predict/tropism", json={"patients": batch}),  # the pandera path
        client.post("/invocations", json={"dataframe_records": [bad]}),
        client.post(  # malformed: 400
            "/v1/predict/tropism", content=truncated, headers={"content-type": "application/json"}
        ),
    ]
    assert [a.status_code for a in answers] == [200, 422, 422, 422, 400]
    assert caplog.records, "the capture must see the service's requests"
    needles = (SECRET_ID, str(SECRET_VALUE), str(SECRET_BAD_VALUE))
    for record in caplog.records:
        text = " ".join(
            [record.getMessage(), str(record.args), str(record.exc_text), str(record.exc_info)]
        )
        for needle in needles:
            assert needle not in text, (record.name, record.levelname)
    # and the errors name fields and rules without echoing the values
    for answer in answers[1:]:
        assert str(SECRET_BAD_VALUE) not in answer.text
        assert str(SECRET_VALUE) not in answer.text


@pytest.mark.parametrize("task", TASKS)
def test_explain_false_gives_the_same_answer_without_contributions(
    client: TestClient, patients: list[dict[str, Any]], task: str
) -> None:
    full = client.post(f"/v1/predict/{task}", json={"patients": patients}).json()
    bare = client.post(
        f"/v1/predict/{task}", params={"explain": "false"}, json={"patients": patients}
    ).json()
    assert bare["model"] == full["model"]
    for with_top, without in zip(full["patients"], bare["patients"], strict=True):
        assert with_top.pop("top_features")
        assert without.pop("top_features", None) is None
        assert set(without) == set(with_top)
        for key, value in with_top.items():  # outputs agree to rounding (another code path)
            if key in INTERVALS:
                np.testing.assert_allclose(_bounds(without[key]), _bounds(value), atol=1e-12)
                continue
            expected = pytest.approx(value, abs=1e-12) if key in NUMERIC_OUTPUTS else value
            assert without[key] == expected, key


NUMERIC_OUTPUTS = {"probabilities", "cumulative_risk", "late_relapse_probability"}
INTERVALS = {"intervals", "cumulative_risk_intervals", "late_relapse_interval"}


def _bounds(value: Any) -> list[float]:
    """The numbers of an interval or of a dict of intervals, in order."""
    pairs = value.values() if isinstance(value, dict) else [value]
    return [x for pair in pairs for x in pair]


@pytest.mark.parametrize("task", TASKS)
def test_a_model_without_intervals_answers_null_intervals(
    trained_store: TrainedStore,
    predictors: dict[str, Predictor],
    patients: list[dict[str, Any]],
    task: str,
) -> None:
    """A model trained before intervals existed still serves: its intervals are null."""
    bare = {t: replace(p, intervals=None) for t, p in predictors.items()}
    with TestClient(create_app(_settings(trained_store), **_injected(bare))) as c:
        body = c.post(f"/v1/predict/{task}", json={"patients": patients}).json()
        assert body["interval_level"] is None
        for answer in body["patients"]:
            if task == "tropism":
                assert answer["intervals"] is None
            else:
                assert answer["cumulative_risk_intervals"] is None
                assert answer["late_relapse_interval"] is None
        frame = _frame(patients)
        payload = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        answer = c.post("/invocations", params={"task": task}, json=payload).json()
        assert list(answer["predictions"][0]) == list(predictors[task].output_names)
