"""The prediction routes skip FastAPI's per-request dependency solving (``DirectRoute``).

They must answer every request exactly as the same routes solved by FastAPI would: the API key
check first, then the query parameters (values and 422s), then the body; the same OpenAPI
document. Each case runs against both variants of the same service and compares the answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from metapredict import registry
from metapredict.predictor import Predictor
from serving import routes
from serving.app import create_app
from serving.request_model import example_patient
from serving.settings import ServingSettings
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

TASKS = ("tropism", "dormancy")
KEY = "reader-key"


@pytest.fixture(scope="module")
def predictors(trained_store: TrainedStore) -> dict[str, Predictor]:
    return {task: registry.load(task, "champion", trained_store.settings) for task in TASKS}


def _app(store: TrainedStore, predictors: dict[str, Predictor], **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "tracking_uri": store.settings.tracking_uri,
        "artifact_root": store.settings.artifact_root,
        "poll_seconds": 0,
        "max_body_bytes": 4096,
    }
    return create_app(
        ServingSettings(**(values | overrides)),
        loader=lambda task, alias, settings: predictors[task],
        version_probe=lambda task, alias, settings: predictors[task].info.version,
    )


@pytest.fixture(scope="module")
def pairs(
    trained_store: TrainedStore, predictors: dict[str, Predictor]
) -> Iterator[dict[str, tuple[TestClient, TestClient]]]:
    """Per API-key setting: (direct routes, the same routes solved by FastAPI)."""
    with ExitStack() as stack, pytest.MonkeyPatch.context() as mp:
        built: dict[str, tuple[TestClient, TestClient]] = {}
        for name, key in (("open", None), ("keyed", KEY)):
            direct = _app(trained_store, predictors, api_key=key)
            mp.setattr(routes, "DirectRoute", APIRoute)  # the routes as FastAPI builds them
            solved = _app(trained_store, predictors, api_key=key)
            mp.undo()
            built[name] = (
                stack.enter_context(TestClient(direct)),
                stack.enter_context(TestClient(solved)),
            )
        yield built


JSON = {"content-type": "application/json"}


def test_the_prediction_routes_are_direct(pairs: dict[str, tuple[TestClient, TestClient]]) -> None:
    """Only FastAPI's dependency solving consults dependency_overrides: it tells them apart."""
    direct, solved = pairs["open"]

    async def closed() -> None:
        raise routes.RequestRejected(503, "overridden")

    body = _patients_body()
    try:
        for client in (direct, solved):
            client.app.dependency_overrides[routes.get_store] = closed  # type: ignore[attr-defined]
        for path in ("/v1/predict/tropism", "/v1/predict/dormancy"):
            assert direct.post(path, content=body, headers=JSON).status_code == 200
            assert solved.post(path, content=body, headers=JSON).status_code == 503
        assert direct.post("/invocations", content=_split_body(), headers=JSON).status_code == 200
        assert solved.post("/invocations", content=_split_body(), headers=JSON).status_code == 503
        assert direct.get("/v1/models").status_code == 503  # other routes: solved as ever
    finally:
        for client in (direct, solved):
            client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


def _patients_body() -> bytes:
    return json.dumps({"patients": [example_patient()]}).encode()


def _split_body() -> bytes:
    patient = example_patient()
    patient.pop("id")
    return json.dumps(
        {"dataframe_split": {"columns": list(patient), "data": [list(patient.values())]}}
    ).encode()


QUERIES = (
    "",
    "?explain=false",
    "?explain=0",
    "?explain=off",
    "?explain=YES",
    "?explain=maybe",
    "?explain=",
    "?explain=false&explain=true",
    "?explain=maybe&explain=true",
    "?unrelated=1",
)
INVOCATION_QUERIES = ("", "?task=dormancy", "?task=bogus", "?task=", "?task=Tropism")
HEADERS: tuple[dict[str, str], ...] = (
    {},
    {"X-API-Key": "wrong"},
    {"X-API-Key": KEY},
    {"x-api-key": KEY},
)


def _cases() -> list[tuple[str, bytes]]:
    cases = []
    for task in TASKS:
        for query in QUERIES:
            for content in (_patients_body(), b"{", b"", b'{"patients": 1}', b"x" * 5000):
                cases.append((f"/v1/predict/{task}{query}", content))
    for query in INVOCATION_QUERIES:
        for content in (_split_body(), b"]", b'{"dataframe_records": [{}]}'):
            cases.append((f"/invocations{query}", content))
    return cases


@pytest.mark.parametrize("keyed", ["open", "keyed"])
def test_direct_routes_answer_as_fastapi_would(
    pairs: dict[str, tuple[TestClient, TestClient]], keyed: str
) -> None:
    direct, solved = pairs[keyed]
    seen = set()
    for path, content in _cases():
        for headers in HEADERS:
            headers = {**headers, "content-type": "application/json"}
            a = direct.post(path, content=content, headers=headers)
            b = solved.post(path, content=content, headers=headers)
            assert (a.status_code, a.content) == (b.status_code, b.content), (path, headers)
            assert a.headers.get("content-type") == b.headers.get("content-type")
            seen.add(a.status_code)
    assert {200, 400, 413, 422} <= seen
    if keyed == "keyed":
        assert 401 in seen


def test_the_openapi_document_is_the_same(pairs: dict[str, tuple[TestClient, TestClient]]) -> None:
    direct, solved = pairs["keyed"]
    spec = direct.get("/openapi.json").json()
    assert spec == solved.get("/openapi.json").json()
    parameters = spec["paths"]["/v1/predict/tropism"]["post"]["parameters"]
    assert {p["name"] for p in parameters} == {"explain", "X-API-Key"}


def test_a_route_it_cannot_call_is_refused() -> None:
    from fastapi import APIRouter, Depends

    async def other(request: Any, store: routes.StoreDep, extra: int) -> None:
        return None

    router = APIRouter()
    with pytest.raises(TypeError, match="DirectRoute does not know how to call"):
        router.add_api_route(
            "/x",
            other,
            methods=["POST"],
            dependencies=[Depends(routes.require_api_key)],
            route_class_override=routes.DirectRoute,
        )
