"""Bad input over HTTP: 422 naming each failing field of each patient, 413, 400, never a 500.

Every case runs against two services that differ only in the validator: the pydantic request
model (small requests) and the pandera schema (``pandera_batch_rows=1``, every batch). Both
serve the session's trained champions, injected so the services start in milliseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metapredict import registry, schema
from metapredict.predictor import Predictor
from serving.app import create_app
from serving.request_model import example_patient
from serving.settings import ServingSettings
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")
PATHS = ("pydantic", "pandera")
ROUTES = ("/v1/predict/tropism", "/v1/predict/dormancy", "/invocations")
MAX_PATIENTS = 3
MAX_BODY = 8192
LM22 = schema.lm22_columns()


@pytest.fixture(scope="module")
def predictors(trained_store: TrainedStore) -> dict[str, Predictor]:
    return {task: registry.load(task, "champion", trained_store.settings) for task in TASKS}


def _app(store: TrainedStore, predictors: dict[str, Predictor], **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "tracking_uri": store.settings.tracking_uri,
        "artifact_root": store.settings.artifact_root,
        "poll_seconds": 0,
        "api_key": None,
        "admin_api_key": None,
        "max_patients": 1000,
        "max_body_bytes": 4_000_000,
        "pandera_batch_rows": 10**6,
    }
    return create_app(
        ServingSettings(**(values | overrides)),
        loader=lambda task, alias, settings: predictors[task],
        version_probe=lambda task, alias, settings: predictors[task].info.version,
    )


#: Every request of this module is JSON (415 for other media types is tested on its own).
JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def clients(
    trained_store: TrainedStore, predictors: dict[str, Predictor]
) -> Iterator[dict[str, TestClient]]:
    with ExitStack() as stack:
        yield {
            "pydantic": stack.enter_context(
                TestClient(_app(trained_store, predictors), headers=JSON_HEADERS)
            ),
            "pandera": stack.enter_context(
                TestClient(
                    _app(trained_store, predictors, pandera_batch_rows=1), headers=JSON_HEADERS
                )
            ),
            "default": stack.enter_context(
                TestClient(
                    _app(trained_store, predictors, pandera_batch_rows=200), headers=JSON_HEADERS
                )
            ),
            "limits": stack.enter_context(
                TestClient(
                    _app(
                        trained_store,
                        predictors,
                        max_patients=MAX_PATIENTS,
                        max_body_bytes=MAX_BODY,
                    ),
                    headers=JSON_HEADERS,
                )
            ),
        }


@pytest.fixture(params=PATHS)
def client(request: pytest.FixtureRequest, clients: dict[str, TestClient]) -> TestClient:
    return clients[request.param]


def _patients() -> list[dict[str, Any]]:
    base = example_patient()
    return [
        {**base, "id": f"P{i}", "cancer_type": t, "stage": s}
        for i, (t, s) in enumerate((("breast", "I"), ("melanoma", "II"), ("colorectal", "III")))
    ]


def _shift(row: dict[str, Any], field: str, value: float) -> None:
    """Set one LM22 fraction, keeping the row sum by moving the difference to the largest."""
    largest = max((c for c in LM22 if c != field), key=lambda c: row[c])
    row[largest] += row[field] - value
    row[field] = value


def _body(patients: list[dict[str, Any]]) -> bytes:
    return json.dumps({"patients": patients}).encode()


def _with(change: Callable[[list[dict[str, Any]]], None]) -> Callable[[], bytes]:
    def build() -> bytes:
        patients = _patients()
        change(patients)
        return _body(patients)

    return build


def _raw(index: int, **tokens: str) -> Callable[[], bytes]:
    """A body whose fields of patient ``index`` are raw JSON tokens (NaN, Infinity, 1e400)."""

    def build() -> bytes:
        patients = _patients()
        for field in tokens:
            patients[index][field] = f"__{field}__"
        body = _body(patients)
        for field, token in tokens.items():
            body = body.replace(f'"__{field}__"'.encode(), token.encode())
        return body

    return build


def _set(index: int, **values: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(patients: list[dict[str, Any]]) -> None:
        patients[index].update(values)

    return change


def _drop(index: int, *fields: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(patients: list[dict[str, Any]]) -> None:
        for field in fields:
            del patients[index][field]

    return change


def _scale_fractions(index: int, factor: float) -> Callable[[list[dict[str, Any]]], None]:
    def change(patients: list[dict[str, Any]]) -> None:
        for c in LM22:
            patients[index][c] *= factor

    return change


def _negative_fraction(patients: list[dict[str, Any]]) -> None:
    _shift(patients[0], "t_cells_cd8", -0.01)


def _several(patients: list[dict[str, Any]]) -> None:
    patients[0]["stage"] = "V"
    patients[2]["age_years"] = 17.5
    patients[2]["platelet_count"] = 4000.0
    del patients[2]["cancer_type"]


SUM = "the 22 LM22 fractions must sum to 1"
NOT_TRAINED_ON = "is not a cancer type this model was trained on; it knows: breast, colorectal"

#: (case, body builder, {(patient, id, field): words the rule must contain})
BAD_INPUTS: list[tuple[str, Callable[[], bytes], dict[tuple[Any, Any, Any], str]]] = [
    ("nan-token", _raw(1, b_cells_naive="NaN"), {(1, "P1", "b_cells_naive"): "finite"}),
    (
        "infinity-tokens",
        _raw(0, platelet_count="Infinity", age_years="-Infinity"),
        {(0, "P0", "platelet_count"): "finite", (0, "P0", "age_years"): "finite"},
    ),
    (
        "number-beyond-double",
        _raw(2, mdsc_score="1e400"),
        {(2, "P2", "mdsc_score"): "finite"},
    ),
    ("negative-fraction", _with(_negative_fraction), {(0, "P0", "t_cells_cd8"): "at least 0"}),
    (
        "fraction-above-one",
        _with(_set(1, macrophages_m2=1.5)),
        {(1, "P1", "macrophages_m2"): "must be at most 1"},
    ),
    (
        "out-of-range",
        _with(_set(2, age_years=150.0, platelet_count=2.0)),
        {
            (2, "P2", "age_years"): "must be at most 100 years",
            (2, "P2", "platelet_count"): "must be at least 5 10^9/L",
        },
    ),
    (
        "unknown-category",
        _with(_set(0, cancer_type="glioma", stage="V")),
        {
            (0, "P0", "cancer_type"): NOT_TRAINED_ON,
            (0, "P0", "stage"): "must be one of: I, II, III",
        },
    ),
    (
        "category-of-wrong-type",
        _with(_set(1, stage=2)),
        {(1, "P1", "stage"): "must be one of: I, II, III"},
    ),
    (
        "missing-required",
        _with(_drop(1, "cancer_type", "b_cells_naive")),
        {(1, "P1", "cancer_type"): "is required", (1, "P1", "b_cells_naive"): "is required"},
    ),
    (
        "unknown-extra-field",
        _with(_set(0, tumour_grade=2)),
        {(0, "P0", "tumour_grade"): "is not a field the schema knows"},
    ),
    (
        "fractions-do-not-sum-to-one",
        _with(_scale_fractions(2, 1.5)),
        {(2, "P2", None): SUM},
    ),
    ("text-for-a-number", _with(_set(0, age_years="sixty")), {(0, "P0", "age_years"): "number"}),
    ("list-for-a-number", _with(_set(0, age_years=[60])), {(0, "P0", "age_years"): "number"}),
    (
        "integer-beyond-float",
        _raw(1, age_years="1" + "0" * 400),
        {(1, "P1", "age_years"): "number"},
    ),
    ("id-not-a-string", _with(_set(2, id=7)), {(2, None, "id"): "must be a string"}),
    ("id-too-long", _with(_set(1, id="x" * 201)), {(1, None, "id"): "too long"}),
    (
        "patient-not-an-object",
        lambda: json.dumps({"patients": [*_patients()[:2], 42]}).encode(),
        {(2, None, None): "JSON object"},
    ),
    (
        "several-patients-each-named",
        _with(_several),
        {
            (0, "P0", "stage"): "must be one of",
            (2, "P2", "age_years"): "must be at least 18 years",
            (2, "P2", "platelet_count"): "must be at most 2000",
            (2, "P2", "cancer_type"): "is required",
        },
    ),
]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_422_naming_each_field_and_rule(
    client: TestClient,
    task: str,
    build: Callable[[], bytes],
    expected: dict[tuple[Any, Any, Any], str],
) -> None:
    response = client.post(
        f"/v1/predict/{task}", content=build(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    detail = body["detail"]
    # the pandera path also checks the fraction sum of a patient whose field failed
    wants_sum = any(words == SUM for words in expected.values())
    found = {
        (d["patient"], d["id"], d["field"]): d["rule"]
        for d in detail
        if wants_sum or not (d["field"] is None and d["rule"].startswith(SUM))
    }
    assert set(found) == set(expected), detail
    for key, words in expected.items():
        assert words in found[key], (key, found[key])
    assert len({d["patient"] for d in detail}) == len({k[0] for k in expected})
    assert body["message"].startswith(f"{len(detail)} problem")


BATCH = 500


@pytest.mark.parametrize("build", [c[1] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_the_same_bad_patients_get_the_same_detail_in_a_batch_of_500(
    clients: dict[str, TestClient], build: Callable[[], bytes]
) -> None:
    """A small request (the request model) and a batch of 500 (the pandera schema): the same
    problems of the same patients, word for word."""
    patients = json.loads(build())["patients"]
    good = [{**_patients()[0], "id": f"G{i}"} for i in range(BATCH - len(patients))]
    small = clients["default"].post("/v1/predict/tropism", content=_body(patients))
    batch = clients["default"].post("/v1/predict/tropism", content=_body(good + patients))
    assert small.status_code == batch.status_code == 422, (small.text, batch.text)
    shift = len(good)

    def key(d: dict[str, Any]) -> tuple[str, ...]:
        return tuple(map(str, (d["patient"], d["id"], d["field"], d["rule"])))

    expected = sorted(small.json()["detail"], key=key)
    found = [
        {**d, "patient": d["patient"] - shift if d["patient"] is not None else None}
        for d in batch.json()["detail"]
    ]
    assert sorted(found, key=key) == expected


def test_at_most_100_problems_are_listed_and_the_rest_counted(client: TestClient) -> None:
    patient = {**_patients()[0], **{f"unknown_{i}": 1 for i in range(250)}}
    response = client.post("/v1/predict/tropism", json={"patients": [patient, patient]})
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 100
    assert body["omitted"] == 400
    assert body["message"].startswith("500 problems in 2 patients; the first 100 are listed")


def test_duplicate_keys_are_refused(client: TestClient) -> None:
    patient = json.dumps(_patients()[0])
    twice = patient[:-1] + ', "age_years": 50.0}'
    for body in (f'{{"patients": [{twice}]}}', f'{{"patients": [], "patients": [{patient}]}}'):
        response = client.post("/v1/predict/tropism", content=body.encode())
        assert response.status_code == 422, response.text
        assert "appears twice" in response.json()["message"]
    # a colon inside a string, escaped or not, is not a key
    fine = {**_patients()[0], "id": "a:b"}
    escaped = json.dumps({"patients": [fine]}).replace("a:b", "a\\u003ab")
    for body in (json.dumps({"patients": [fine]}), escaped):
        assert client.post("/v1/predict/tropism", content=body.encode()).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient, route: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    request = client.build_request("POST", route, content=_body(_patients()), headers=headers)
    if content_type is None:
        del request.headers["content-type"]
    response = client.send(request)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["message"]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_invocations_names_the_same_fields(
    client: TestClient, build: Callable[[], bytes], expected: dict[tuple[Any, Any, Any], str]
) -> None:
    content = build().replace(b'"patients"', b'"dataframe_records"', 1)
    response = client.post("/invocations", content=content)
    assert response.status_code == 422, response.text
    fields = {d["field"] for d in response.json()["detail"]}
    assert {k[2] for k in expected} <= fields


def test_null_in_an_optional_extra_is_accepted(client: TestClient) -> None:
    patients = _patients()
    patients[0] |= dict.fromkeys(schema.extra_columns())
    for c in schema.extra_columns():
        del patients[1][c]
    response = client.post("/v1/predict/dormancy", json={"patients": patients})
    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()["patients"]] == ["P0", "P1", "P2"]


# --- the request envelope ---------------------------------------------------------------------

ENVELOPES: list[tuple[str, Any, str]] = [
    ("a-list", [example_patient()], "JSON object"),
    ("no-patients-key", {"patient": [example_patient()]}, "'patients'"),
    ("patients-not-a-list", {"patients": example_patient()}, "list"),
    ("no-patients", {"patients": []}, "at least one"),
    ("unknown-top-level-field", {"patients": [example_patient()], "debug": True}, "debug"),
    ("a-string", "patients", "JSON object"),
    ("null", None, "JSON object"),
]


@pytest.mark.parametrize(
    ("document", "words"), [c[1:] for c in ENVELOPES], ids=[c[0] for c in ENVELOPES]
)
def test_bad_envelope_is_422(client: TestClient, document: Any, words: str) -> None:
    response = client.post("/v1/predict/tropism", content=json.dumps(document).encode())
    assert response.status_code == 422
    assert words in response.json()["message"]


def _columns_and_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}


INVOCATION_ENVELOPES: list[tuple[str, Any, str]] = [
    ("neither-format", {"rows": [example_patient()]}, "dataframe_split"),
    ("two-formats", {"inputs": [], "instances": []}, "exactly one"),
    ("unknown-column", {"dataframe_split": {"columns": ["age", "age_years"], "data": []}}, "age"),
    ("records-not-a-list", {"dataframe_records": example_patient()}, "list"),
    ("split-without-columns", {"dataframe_split": {"data": [[1.0]]}}, "columns"),
    (
        "split-row-too-short",
        {"dataframe_split": {"columns": ["age_years", "stage"], "data": [[60.0]]}},
        "as long as",
    ),
    (
        "split-data-not-rows",
        {"dataframe_split": {"columns": ["age_years"], "data": 3}},
        "as long as",
    ),
    ("a-list", [example_patient()], "JSON object"),
]


@pytest.mark.parametrize(
    ("document", "words"),
    [c[1:] for c in INVOCATION_ENVELOPES],
    ids=[c[0] for c in INVOCATION_ENVELOPES],
)
def test_bad_invocations_envelope_is_422(client: TestClient, document: Any, words: str) -> None:
    response = client.post("/invocations", json=document)
    assert response.status_code == 422
    assert words in response.json()["message"]


def test_invocations_split_names_fields_per_row(client: TestClient) -> None:
    rows = _patients()
    rows[1]["age_years"] = 9.0
    response = client.post("/invocations", json={"dataframe_split": _columns_and_data(rows)})
    assert response.status_code == 422
    assert [(d["patient"], d["field"]) for d in response.json()["detail"]] == [(1, "age_years")]


def test_unknown_task_is_422(client: TestClient) -> None:
    response = client.post(
        "/invocations", params={"task": "relapse"}, json={"dataframe_records": _patients()}
    )
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["detail"]] == ["task"]


# --- 413 and 400 ------------------------------------------------------------------------------


def _many(n: int) -> list[dict[str, Any]]:
    return [{**_patients()[0], "id": f"P{i}"} for i in range(n)]


@pytest.mark.parametrize("route", ROUTES)
def test_too_many_patients_is_413(clients: dict[str, TestClient], route: str) -> None:
    limits = clients["limits"]
    key = "dataframe_records" if route == "/invocations" else "patients"
    assert limits.post(route, json={key: _many(MAX_PATIENTS)}).status_code == 200
    response = limits.post(route, json={key: _many(MAX_PATIENTS + 1)})
    assert response.status_code == 413
    assert f"the maximum is {MAX_PATIENTS}" in response.json()["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_body_over_the_limit_is_413(clients: dict[str, TestClient], route: str) -> None:
    limits = clients["limits"]
    key = "dataframe_records" if route == "/invocations" else "patients"
    body = json.dumps({key: _many(1)}).encode()
    assert len(body) < MAX_BODY
    padded = body[:-1] + b" " * MAX_BODY + b"}"  # still valid JSON, one patient
    response = limits.post(route, content=padded)
    assert response.status_code == 413
    assert str(MAX_BODY) in response.json()["message"]
    # also when the client does not announce the size (chunked transfer)
    chunked = limits.post(route, content=iter([padded[:100], padded[100:]]))
    assert chunked.status_code == 413


MALFORMED = [
    ("truncated", b'{"patients": ['),
    ("single-quotes", b"{'patients': []}"),
    ("trailing-garbage", b'{"patients": []} x'),
    ("not-utf8", b'{"patients": "\xff\xfe"}'),
    ("empty", b""),
    ("whitespace", b"   "),
    ("nested-too-deeply", b'{"patients": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("unpaired-surrogate-id", b'{"patients": [{"id": "\\ud800"}]}'),
    ("unpaired-surrogate-key", b'{"patients": [{"\\udfff": 1}], "n": NaN}'),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("content", [c[1] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_json_is_400(client: TestClient, route: str, content: bytes) -> None:
    response = client.post(route, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["message"]


def test_surrogate_pairs_are_fine(client: TestClient) -> None:
    patients = _patients()
    patients[0]["id"] = "patient \U0001f600"
    content = json.dumps({"patients": patients}).encode()  # ascii escapes: \ud83d\ude00
    assert b"\\ud83d\\ude00" in content
    response = client.post("/v1/predict/tropism", content=content)
    assert response.status_code == 200
    assert response.json()["patients"][0]["id"] == "patient \U0001f600"


# --- no input produces a 500 ------------------------------------------------------------------

#: values that have broken JSON services: unpaired surrogates, integers no double can hold,
#: the extremes of float, NUL, text that looks like a number
NASTY = (
    "\ud800",
    "x\udfff",
    "\x00",
    "NaN",
    "1e5",
    "",
    10**400,
    -(10**400),
    2**64,
    1.8e308,
    -0.0,
    5e-324,
)
#: text including unpaired surrogates, which json.dumps writes as \ud800 escapes
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(NASTY),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
feature_names = st.sampled_from([*schema.feature_columns(), "id"])


@st.composite
def patient_like(draw: st.DrawFn) -> Any:
    """Mostly a plausible patient with a few fields replaced, dropped or added; else anything."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    patient: dict[str, Any] = dict(_patients()[draw(st.integers(0, 2))])
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            patient[draw(feature_names)] = draw(st.sampled_from(NASTY) | json_values)
        elif action == "drop":
            patient.pop(draw(feature_names), None)
        else:
            name = draw(st.sampled_from([n for n in NASTY if isinstance(n, str)]) | any_text)
            patient[name] = draw(json_values)
    return patient


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    route = draw(st.sampled_from([*ROUTES, "/invocations?task=dormancy"]))
    kind = draw(st.sampled_from(["patients", "records", "split", "any", "bytes"]))
    if kind == "bytes":
        return route, draw(st.binary(max_size=200))
    if kind == "any":
        document: Any = draw(json_values)
    else:
        rows = draw(st.lists(patient_like(), min_size=0, max_size=4))
        if kind == "patients":
            document = {"patients": rows}
        elif kind == "records":
            document = {"dataframe_records": rows}
        else:
            columns = sorted({k for r in rows if isinstance(r, dict) for k in r})
            data = [[r.get(c) for c in columns] if isinstance(r, dict) else r for r in rows]
            document = {"dataframe_split": {"columns": columns, "data": data}}
    return route, json.dumps(document, allow_nan=True).encode()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(path=st.sampled_from(PATHS), request=request_bodies())
def test_no_input_produces_a_500(
    clients: dict[str, TestClient], path: str, request: tuple[str, bytes]
) -> None:
    route, content = request
    response = clients[path].post(route, content=content)
    assert response.status_code in {200, 400, 413, 422}, (response.status_code, response.text)
    body = response.json()
    if response.status_code != 200:
        assert isinstance(body["message"], str)
    elif route.startswith("/invocations"):
        assert all(all(math.isfinite(v) for v in p.values()) for p in body["predictions"])


def test_stage_iv_gets_tropism_probabilities_and_a_dormancy_422_with_the_reason(
    client: TestClient,
) -> None:
    patients = _patients()
    patients[1]["stage"] = "IV"
    tropism = client.post("/v1/predict/tropism", json={"patients": patients})
    assert tropism.status_code == 200, tropism.text
    assert len(tropism.json()["patients"][1]["probabilities"]) >= 1
    dormancy = client.post("/v1/predict/dormancy", json={"patients": patients})
    assert dormancy.status_code == 422, dormancy.text
    [detail] = dormancy.json()["detail"]
    assert (detail["patient"], detail["field"]) == (1, "stage")
    assert detail["rule"].startswith("stage IV is metastatic at diagnosis")


def test_an_unseen_cancer_type_gets_422_naming_the_model_types(
    client: TestClient, predictors: dict[str, Predictor]
) -> None:
    patients = _patients()
    patients[2]["cancer_type"] = "Glioblastoma"
    for task in TASKS:
        response = client.post(f"/v1/predict/{task}", json={"patients": patients})
        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert (detail["patient"], detail["field"]) == (2, "cancer_type")
        known = ", ".join(predictors[task].cancer_types)
        assert detail["rule"].endswith(f"it knows: {known}")
        assert "gastric" in known and "renal" in known  # the default cohort's new types


def test_missing_stage_and_age_are_accepted_and_named_in_the_answer(client: TestClient) -> None:
    patients = _patients()
    patients[0]["stage"] = None
    del patients[1]["age_years"]
    patients[2]["cancer_type"] = "Stomach Adenocarcinoma"  # normalised to the label gastric
    response = client.post("/v1/predict/dormancy", json={"patients": patients})
    assert response.status_code == 200, response.text
    answers = response.json()["patients"]
    assert "stage" in answers[0]["missing_inputs"]
    assert "age_years" in answers[1]["missing_inputs"]
    assert "stage" not in answers[2]["missing_inputs"]
