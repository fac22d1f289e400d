"""Replicas: two ``metapredict serve`` processes (one of them with two workers) on one store.

Per store (the embedded SQLite default, and the tracking server on PostgreSQL): bounded load on
both replicas while the champion moves from version 1 to version 2. No request fails, every
replica and every worker ends up serving version 2 on its own (each polls the registry), and
``/metrics`` of the two-worker replica counts every prediction it made, whichever worker served
it. (How long the switch takes is measured by ``benchmarks/replicas.py``, not asserted here.)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from metapredict.pipeline import run_training
from metapredict.settings import StoreSettings
from serving.request_model import example_patient
from tests.servers import (
    LISTEN,
    Replica,
    connections_per_process,
    register_copy,
    serve_replica,
    wait_until,
)
from tests.support import TrainedStore, tiny_training_config

pytestmark = pytest.mark.slow

MODEL = "metapredict-tropism"
POLL_SECONDS = 1.0
#: Bounds of the load: requests per sender, and seconds for the whole switch.
MAX_REQUESTS = 4000
SWITCH_TIMEOUT = 60.0
BODY = json.dumps({"patients": [example_patient()]}).encode()


@pytest.fixture(scope="module")
def two_versions(shared_store: StoreSettings) -> StoreSettings:
    """Version 1 (trained, champion) and version 2 (the same model registered again)."""
    trained = run_training(
        tiny_training_config("tropism", n_estimators=10, learning_rate=0.2), settings=shared_store
    )
    assert (trained.registered.version, trained.registered.alias) == ("1", "champion")
    uri = shared_store.resolved_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert register_copy(client, MODEL, "1") == "2"
    return shared_store


@dataclass
class Sender:
    """Sends single-patient predictions to one replica until told to stop (bounded)."""

    replica: Replica
    stop: threading.Event
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # (status, version)
    error: BaseException | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.replica.port, timeout=30)
        try:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                conn.request(
                    "POST",
                    "/v1/predict/tropism",
                    body=BODY,
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                payload = response.read()
                version = (
                    json.loads(payload)["model"]["version"] if response.status == 200 else None
                )
                self.answers.append((response.status, version))
        except BaseException as err:  # a refused or broken connection is a failed request
            self.error = err
        finally:
            conn.close()


def _metrics(replica: Replica) -> dict[str, list[tuple[dict[str, str], float]]]:
    conn = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def _worker_versions(replica: Replica) -> dict[str, set[str]]:
    """Per worker pid (one entry ``""`` for a single worker): versions with model_info 1."""
    found: dict[str, set[str]] = {}
    for labels, value in _metrics(replica).get("metapredict_model_info", []):
        if value == 1:
            found.setdefault(labels.get("pid", ""), set()).add(labels["version"])
    return found


@contextlib.contextmanager
def _senders(replicas: list[Replica], per_replica: int) -> Iterator[list[Sender]]:
    stop = threading.Event()
    senders = [Sender(r, stop) for r in replicas for _ in range(per_replica)]
    threads = [threading.Thread(target=s.run) for s in senders]
    for t in threads:
        t.start()
    try:
        yield senders
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)


def _wait(condition: Callable[[], object], what: str) -> None:
    wait_until(condition, SWITCH_TIMEOUT, what)


def _bursts_of_connections_reach_both_workers(replica: Replica, bursts: int = 5) -> None:
    """16 keep-alive connections opened at once (a client's pool) are held by both workers,
    burst after burst: each worker listens on its own SO_REUSEPORT socket. (On one shared
    socket, the worker that woke first took all 16 in 3 bursts of 10.)"""
    for _ in range(bursts):
        connections = [
            http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30) for _ in range(16)
        ]
        try:
            for connection in connections:
                connection.connect()
            mine = {connection.sock.getsockname()[1] for connection in connections}
            for connection in connections:  # answered: accepted by the worker that holds it
                connection.request("GET", "/health/live")
                assert connection.getresponse().read()
            held = connections_per_process(replica.pid, replica.port, peers=mine)
            assert sum(held.values()) == 16 and len(held) == 2, held
        finally:
            for connection in connections:
                connection.close()


def test_champion_flip_reaches_every_replica_with_no_failed_request(
    two_versions: StoreSettings,
) -> None:
    uri = two_versions.resolved_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias(MODEL, "champion", "1")
    with (
        serve_replica(two_versions, workers=2, poll_seconds=POLL_SECONDS) as pair,
        serve_replica(two_versions, workers=1, poll_seconds=POLL_SECONDS) as single,
    ):
        replicas = [pair, single]
        _wait(lambda: len(_worker_versions(pair)) == 2, "both workers of the 2-worker replica")
        _bursts_of_connections_reach_both_workers(pair)
        with _senders(replicas, per_replica=2) as senders:
            _wait(lambda: all(len(s.answers) >= 5 for s in senders), "first answers")
            client.set_registered_model_alias(MODEL, "champion", "2")
            _wait(
                lambda: all(
                    versions and all(v == {"2"} for v in versions.values())
                    for versions in (_worker_versions(r) for r in replicas)
                ),
                "every worker of every replica on version 2",
            )
            counts = [len(s.answers) for s in senders]
            _wait(
                lambda: all(len(s.answers) >= c + 5 for s, c in zip(senders, counts, strict=True)),
                "answers after the switch",
            )
        for sender in senders:
            assert sender.error is None, sender.error
            statuses = {status for status, _ in sender.answers}
            assert statuses == {200}, statuses
            versions = [v for _, v in sender.answers]
            assert versions[0] == "1" and versions[-1] == "2"
            # every worker had switched when `counts` was taken: later answers are version 2
            # (but the one request each sender may have had in flight at that moment)
            assert set(versions[counts[senders.index(sender)] + 1 :]) == {"2"}
        # /metrics of the 2-worker replica sums both workers' counters
        predicted = sum(
            v
            for labels, v in _metrics(pair).get("metapredict_predictions_total", [])
            if labels.get("task") == "tropism"
        )
        sent_to_pair = sum(len(s.answers) for s in senders if s.replica is pair)
        assert predicted == sent_to_pair


def test_a_worker_that_dies_is_started_again(trained_store: TrainedStore) -> None:
    with serve_replica(trained_store.settings, workers=2) as replica:

        def listening() -> set[int]:
            return set(connections_per_process(replica.pid, replica.port, LISTEN))

        _wait(lambda: len(listening()) == 2, "both workers listening")
        victim = min(listening())
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(listening()) == 2 and victim not in listening(), "a new worker")
        connection = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=30)
        connection.request("GET", "/health/ready")
        assert connection.getresponse().status == 200
        connection.close()
