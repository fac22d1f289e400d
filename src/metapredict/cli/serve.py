"""``metapredict serve``: the HTTP prediction service on one or several uvicorn workers.

One worker (the default): the champions are found while the service imports its stack
(:class:`~metapredict.registry.fetch.Prefetch`). Several workers (``--workers N``): uvicorn
starts N processes that share the listening socket; each loads the champions itself and polls for
a new one on its own, and their Prometheus metrics are merged through prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary folder unless already set).
Any number of ``serve`` processes, on other ports or hosts, can share one tracking server.
"""

from __future__ import annotations

import os
import tempfile

import typer

#: The app factory the workers import (``--workers`` > 1 needs an import string).
APP_FACTORY = "serving.app:create_app"


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    poll_seconds: float | None = typer.Option(
        None, "--poll-seconds", min=0, help="Look for a new champion every N s (0: never)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Worker processes sharing the port (about one a core)."
    ),
) -> None:
    """Serve both champions over HTTP (docs at /docs)."""
    from metapredict.registry.fetch import Prefetch
    from serving.settings import ServingSettings

    overrides: dict[str, object] = {"host": host, "port": port}
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    if workers > 1:
        _serve_workers(host, port, poll_seconds, workers)
        return
    # Find the champions now: read a local SQLite registry directly, or else start a child
    # process that asks MLflow's client on the other core while this one imports the service.
    with Prefetch(settings.tasks, settings.alias, settings) as prefetch:
        import uvicorn

        from serving.app import create_app

        app = create_app(settings, startup_loader=prefetch.load, startup_probe=prefetch.version)
        typer.echo(f"metapredict serving on http://{host}:{port} (docs: http://{host}:{port}/docs)")
        uvicorn.run(
            app,
            host=host,
            port=port,
            workers=1,
            access_log=False,
            log_level="info",
            loop="auto",
            http="auto",
        )


def _serve_workers(host: str, port: int, poll_seconds: float | None, workers: int) -> None:
    """uvicorn's process manager: ``workers`` processes, each building the app from the
    environment (the same ``METAPREDICT_*`` settings as this process)."""
    import uvicorn

    from serving.telemetry import MULTIPROC_ENV

    if poll_seconds is not None:  # the workers read their settings from the environment
        os.environ["METAPREDICT_POLL_SECONDS"] = str(poll_seconds)
    with tempfile.TemporaryDirectory(prefix="metapredict-metrics-") as metrics_dir:
        os.environ.setdefault(MULTIPROC_ENV, metrics_dir)
        typer.echo(
            f"metapredict serving on http://{host}:{port} with {workers} workers "
            f"(docs: http://{host}:{port}/docs)"
        )
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="info",
            loop="auto",
            http="auto",
        )
