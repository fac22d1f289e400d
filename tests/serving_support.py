"""Serving the app for tests that need a real HTTP server (a browser, schemathesis)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from metapredict import registry
from metapredict.predictor import Predictor
from serving.app import create_app
from serving.settings import ServingSettings
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
    try:
        deadline = time.monotonic() + 60
        while True:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready")
            if server.started:
                try:
                    if httpx.get(f"{base}{ready_path}", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
