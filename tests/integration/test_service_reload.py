"""Hot reload: a new champion is swapped in atomically, under load, without a failed request.

The module trains two tiny tropism versions into its own store (version 1 @champion, version 2
@challenger). Tests that need exact control over timing use predictors injected through
``create_app(loader=, version_probe=)`` and wait on events with bounded timeouts, never sleep.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from metapredict import registry, schema
from metapredict.pipeline import run_training
from metapredict.predictor import Predictor
from metapredict.settings import StoreSettings
from serving.app import create_app
from serving.model_store import IncompatibleModelError
from serving.request_model import example_patient
from serving.routes import INLINE_ROWS
from serving.settings import ServingSettings
from tests.support import store_from_template, tiny_training_config

pytestmark = pytest.mark.slow

MODEL = "metapredict-tropism"
ADMIN_KEY = "admin-key-for-reload-tests"
ADMIN = {"X-API-Key": ADMIN_KEY}
#: Waits for events are bounded by this (seconds); they normally end in milliseconds.
WAIT = 60.0
ONE = {"patients": [example_patient()]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> StoreSettings:
    settings = store_from_template(tmp_path_factory.mktemp("reload-store"), store_template)
    first = run_training(
        tiny_training_config("tropism", n_estimators=10, learning_rate=0.2), settings=settings
    )
    second = run_training(
        tiny_training_config("tropism", n_estimators=10, learning_rate=0.2), settings=settings
    )
    assert (first.registered.version, first.registered.alias) == ("1", "champion")
    assert (second.registered.version, second.registered.alias) == ("2", "challenger")
    return settings


@pytest.fixture(scope="module")
def version_one(store: StoreSettings) -> Predictor:
    _make_champion(store, "1")
    return registry.load("tropism", "champion", store)


def _make_champion(store: StoreSettings, version: str) -> None:
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)
    client.set_registered_model_alias(MODEL, "champion", version)


def _settings(store: StoreSettings, **overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {
        "tracking_uri": store.tracking_uri,
        "artifact_root": store.artifact_root,
        "tasks": ("tropism",),
        "poll_seconds": 0,
        "api_key": None,
        "admin_api_key": ADMIN_KEY,
    }
    return ServingSettings(**(values | overrides))


def _copy(predictor: Predictor, cls: type[Predictor] = Predictor, **changes: Any) -> Predictor:
    """The same fitted model under another version number / schema / feature list."""
    values = {f.name: getattr(predictor, f.name) for f in dataclasses.fields(predictor)}
    version = changes.pop("version", predictor.info.version)
    values["info"] = dataclasses.replace(predictor.info, version=version)
    return cls(**(values | changes))


def _version(response: Any) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["model"]["version"])


# --- the registry: alias flip under concurrent requests ---------------------------------------


def test_alias_flip_under_load_fails_no_request(store: StoreSettings) -> None:
    _make_champion(store, "1")
    seen: list[tuple[bool, int, str | None]] = []  # (sent after the reload, status, version)
    lock = threading.Lock()
    first_answer, reloaded, enough = threading.Event(), threading.Event(), threading.Event()

    def send(client: TestClient) -> None:
        for _ in range(5000):  # bounded; ends long before when `enough` is set
            if enough.is_set():
                return
            after = reloaded.is_set()
            response = client.post("/v1/predict/tropism", json=ONE)
            version = response.json()["model"]["version"] if response.status_code == 200 else None
            with lock:
                seen.append((after, response.status_code, version))
                if sum(a for a, _, _ in seen) >= 40:
                    enough.set()
            first_answer.set()

    with TestClient(create_app(_settings(store))) as client:
        assert _version(client.post("/v1/predict/tropism", json=ONE)) == "1"
        with ThreadPoolExecutor(4) as pool:
            senders = [pool.submit(send, client) for _ in range(4)]
            assert first_answer.wait(WAIT)
            _make_champion(store, "2")
            answer = client.post("/v1/admin/reload", headers=ADMIN)
            reloaded.set()
            for sender in senders:
                sender.result(timeout=WAIT * 4)
        models = client.get("/v1/models").json()["models"]["tropism"]
        metrics = client.get("/metrics").text

    assert answer.status_code == 200
    assert [(r["task"], r["status"], r["version"]) for r in answer.json()["results"]] == [
        ("tropism", "loaded", "2")
    ]
    assert enough.is_set()
    assert {status for _, status, _ in seen} == {200}
    assert {version for _, _, version in seen} <= {"1", "2"}
    assert "1" in {version for after, _, version in seen if not after}
    assert {version for after, _, version in seen if after} == {"2"}
    assert (models["version"], models["last_reload"]["status"]) == ("2", "loaded")
    info = [line for line in metrics.splitlines() if line.startswith("metapredict_model_info{")]
    assert len(info) == 1
    assert 'version="2"' in info[0]


def test_polling_picks_up_a_new_champion(store: StoreSettings) -> None:
    _make_champion(store, "1")
    answered: list[str] = []
    cycle_after_two = threading.Event()
    saw_one = threading.Event()

    def probe(task: str, alias: str, settings: ServingSettings) -> str:
        # a probe call after one that answered "2" means that reload cycle has finished
        if answered and answered[-1] == "2":
            cycle_after_two.set()
        version = registry.current_version(task, alias, settings)
        answered.append(version)
        if version == "1":
            saw_one.set()
        return version

    app = create_app(_settings(store, poll_seconds=0.02), version_probe=probe)
    with TestClient(app) as client:
        assert _version(client.post("/v1/predict/tropism", json=ONE)) == "1"
        assert saw_one.wait(WAIT)
        _make_champion(store, "2")
        assert cycle_after_two.wait(WAIT)
        assert _version(client.post("/v1/predict/tropism", json=ONE)) == "2"
        reload = client.get("/v1/models").json()["models"]["tropism"]["last_reload"]
    assert reload["status"] in {"loaded", "unchanged"}
    assert reload["version"] == "2"


# --- injected models: exact control -----------------------------------------------------------


class _Gated(Predictor):
    """Blocks inside prediction until ``gate`` is set (so a request is provably in flight)."""

    entered: threading.Event
    gate: threading.Event

    def predict_and_explain(self, X: Any) -> Any:
        self.entered.set()
        assert self.gate.wait(WAIT)
        return super().predict_and_explain(X)

    def predict_matrix(self, X: Any) -> Any:
        self.entered.set()
        assert self.gate.wait(WAIT)
        return super().predict_matrix(X)


class _Registry:
    """A fake registry: ``current`` is the champion's version; loading one may fail."""

    def __init__(self, versions: dict[str, Predictor | Exception]) -> None:
        self.versions = versions
        self.current = "1"

    def probe(self, task: str, alias: str, settings: ServingSettings) -> str:
        return self.current

    def load(self, task: str, alias: str, settings: ServingSettings) -> Predictor:
        found = self.versions[self.current]
        if isinstance(found, Exception):
            raise found
        return found

    def app(self, store: StoreSettings) -> Any:
        return create_app(_settings(store), loader=self.load, version_probe=self.probe)


def test_in_flight_request_finishes_on_the_model_it_started_with(
    store: StoreSettings, version_one: Predictor
) -> None:
    gated = _copy(version_one, _Gated)
    assert isinstance(gated, _Gated)
    gated.entered, gated.gate = threading.Event(), threading.Event()
    fake = _Registry({"1": gated, "2": _copy(version_one, version="2")})
    batch = {"patients": [example_patient()] * (INLINE_ROWS + 8)}  # predicted off the loop

    with TestClient(fake.app(store)) as client, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.post, "/v1/predict/tropism", json=batch)
        try:
            assert gated.entered.wait(WAIT)
            fake.current = "2"
            swapped = client.post("/v1/admin/reload", headers=ADMIN).json()["results"]
            assert [r["status"] for r in swapped] == ["loaded"]
            assert _version(client.post("/v1/predict/tropism", json=ONE)) == "2"
        finally:
            gated.gate.set()
        old = in_flight.result(timeout=WAIT)
    assert _version(old) == "1"
    assert len(old.json()["patients"]) == INLINE_ROWS + 8


def test_failing_load_leaves_the_old_model_serving(
    store: StoreSettings, version_one: Predictor
) -> None:
    fake = _Registry(
        {
            "1": version_one,
            "2": OSError("artifact store unreachable"),
            "3": _copy(version_one, version="3", schema_version="3.0.0"),
        }
    )
    with TestClient(fake.app(store)) as client:
        for version, words in (("2", "artifact store unreachable"), ("3", "schema")):
            fake.current = version
            (result,) = client.post("/v1/admin/reload", headers=ADMIN).json()["results"]
            assert (result["status"], result["version"]) == ("failed", version)
            assert words in result["message"]
            assert _version(client.post("/v1/predict/tropism", json=ONE)) == "1"
            assert client.get("/health/ready").status_code == 200
            model = client.get("/v1/models").json()["models"]["tropism"]
            assert (model["loaded"], model["version"]) == (True, "1")
            assert model["last_reload"]["status"] == "failed"
            assert words in model["last_reload"]["message"]
        fake.current = "1"
        (result,) = client.post("/v1/admin/reload", headers=ADMIN).json()["results"]
        assert result["status"] == "unchanged"


# --- incompatible models refuse to start ------------------------------------------------------

INCOMPATIBLE: list[tuple[str, Callable[[Predictor], dict[str, Any]], str]] = [
    ("schema-major", lambda p: {"schema_version": "3.0.0"}, "trained on schema 3.0.0"),
    ("schema-major-older", lambda p: {"schema_version": "0.9.0"}, "loads models of schema 1.x"),
    (
        "feature-missing",
        lambda p: {"feature_names": p.feature_names[:-1]},
        "expects other features",
    ),
    (
        "feature-added",
        lambda p: {"feature_names": (*p.feature_names, "tumour_grade")},
        "tumour_grade",
    ),
    (
        "features-reordered",
        lambda p: {"feature_names": tuple(reversed(p.feature_names))},
        "expects other features",
    ),
]


@pytest.mark.parametrize(
    ("change", "words"), [c[1:] for c in INCOMPATIBLE], ids=[c[0] for c in INCOMPATIBLE]
)
def test_start_up_refuses_an_incompatible_model(
    store: StoreSettings,
    version_one: Predictor,
    change: Callable[[Predictor], dict[str, Any]],
    words: str,
) -> None:
    fake = _Registry({"1": _copy(version_one, **change(version_one))})
    with pytest.raises(IncompatibleModelError, match=words) as refused, TestClient(fake.app(store)):
        pytest.fail("the service started with an incompatible model")
    message = str(refused.value)
    assert MODEL in message
    assert "Retrain" in message


def test_start_up_accepts_another_minor_schema_version(
    store: StoreSettings, version_one: Predictor
) -> None:
    major = schema.SCHEMA_VERSION.split(".")[0]
    fake = _Registry({"1": _copy(version_one, schema_version=f"{major}.0.0")})
    with TestClient(fake.app(store)) as client:
        assert client.get("/health/ready").status_code == 200
        answer = client.post("/v1/predict/tropism", json=ONE).json()
        assert answer["schema_version"] == f"{major}.0.0"
