"""Serving the app for tests that need a real HTTP server (a browser, schemathesis)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from metapredict import registry
from metapredict.predictor import Predictor
from serving.app import create_app
from serving.settings import ServingSettings
from tests.servers import http_ok, wait_until
from tests.support import TrainedStore


def injected_app(store: TrainedStore, **overrides: Any) -> Any:
    """The service on ``store``'s champions, loaded once and injected (no registry polling)."""
    predictors: dict[str, Predictor] = {
        task: registry.load(task, "champion", store.settings) for task in ("tropism", "dormancy")
    }
    values: dict[str, Any] = {
        "tracking_uri": store.settings.tracking_uri,
        "artifact_root": store.settings.artifact_root,
        "poll_seconds": 0,
        "api_key": None,
        "admin_api_key": None,
    }
    return create_app(
        ServingSettings(**(values | overrides)),
        loader=lambda task, alias, s: predictors[task],
        version_probe=lambda task, alias, s: predictors[task].info.version,
    )


@contextmanager
def served(app: Any, ready_path: str = "/health/ready") -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL once
    ``ready_path`` answers 200, and stops it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def ready() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the service stopped before it was ready")
        return server.started and http_ok(f"{base}{ready_path}")

    try:
        wait_until(ready, 60, "the service to be ready")
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
