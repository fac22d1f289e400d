"""Prometheus metrics of one app instance (its own registry, so tests can build many apps).

Several workers (``metapredict serve --workers N``): prometheus-client's multiprocess mode.
``metapredict serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before it starts the
workers; each worker writes its values there and ``/metrics``, whichever worker answers, reports
the whole replica: request and prediction counters and latency histograms summed over the
workers, and ``metapredict_model_info`` per worker (a ``pid`` label), so a scrape shows whether
every worker has picked up a new champion.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from metapredict.predictor import Predictor

#: Set (by ``metapredict serve --workers N``) when the workers share their metrics via files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess folder when metrics are shared between workers, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Scope key set when the client closed the connection before its request was read; the
#: request is counted with status 499 (nginx's "client closed request"), not as a 500.
CLIENT_CLOSED = "metapredict.client_closed"


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "metapredict_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "metapredict_http_request_duration_seconds",
            "Request latency by route template and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "metapredict_predictions",
            "Patients predicted, by task",
            ["task"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "metapredict_model_info",
            "The model serving each task (value 1)",
            ["task", "name", "version", "alias", "schema_version"],
            registry=self.registry,
            # several workers: one series per live worker (label ``pid``)
            multiprocess_mode="liveall",
        )
        self._model_labels: list[tuple[str, ...]] = []

        # Labelled children, looked up once per label set (labels() takes a lock and builds a
        # key on every call); these metrics are never cleared, so a child stays valid.
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str, str], Any] = {}
        self._predictions: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        labels = (route, method, status)
        counter = self._requests.get(labels)
        if counter is None:
            counter = self._requests[labels] = self.requests.labels(*labels)
            self._latency[labels] = self.latency.labels(*labels)
        counter.inc()
        self._latency[labels].observe(seconds)

    def count_predictions(self, task: str, patients: int) -> None:
        counter = self._predictions.get(task)
        if counter is None:
            counter = self._predictions[task] = self.predictions.labels(task)
        counter.inc(patients)

    def set_models(self, predictors: dict[str, Predictor]) -> None:
        labels: list[tuple[str, ...]] = [
            (task, p.info.name, p.info.version, p.info.alias, p.schema_version)
            for task, p in predictors.items()
        ]
        if multiprocess_dir() is None:
            self.model_info.clear()
        else:  # a value in the shared files outlives clear(): zero the replaced ones
            for old in self._model_labels:
                if old not in labels:
                    self.model_info.labels(*old).set(0)
        for new in labels:
            self.model_info.labels(*new).set(1)
        self._model_labels = labels

    def render(self) -> bytes:
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def close(self) -> None:
        """A worker leaving: drop its per-worker series from the shared files."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: Any, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            code = 499 if scope.get(CLIENT_CLOSED) else status["code"]
            self.telemetry.observe_request(
                template,
                scope.get("method", ""),
                str(code),
                time.perf_counter() - started,
            )
