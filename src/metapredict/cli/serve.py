"""``metapredict serve``: the HTTP prediction service on one or several uvicorn workers.

One worker (the default): the champions are found while the service imports its stack
(:class:`~metapredict.registry.fetch.Prefetch`). Several workers (``--workers N``): N
processes, each on its own socket bound to the port with ``SO_REUSEPORT``
(:mod:`metapredict.cli.workers`); each loads the champions itself and polls for a new one on its
own, and their Prometheus metrics are merged through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary folder unless already set).
Any number of ``serve`` processes, on other ports or hosts, can share one tracking server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from metapredict.cli.workers import run_workers

if TYPE_CHECKING:
    from serving.settings import ServingSettings

logger = logging.getLogger(__name__)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (while starting, or re-raised by uvicorn after its
    graceful shutdown): leave through the context managers, so clean-up runs, with status 0."""
    logger.info("stopped on SIGTERM")
    raise SystemExit(0)


@contextlib.contextmanager
def _sigterm_exits_cleanly() -> Iterator[None]:
    """uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler it
    found: this one, so the command cleans up and exits 0 rather than dying with status 143.
    The previous handler is back when the command ends (it may run inside another program)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    """Serve both champions over HTTP (docs at /docs).

    Refuses to start (exit 2) on invalid METAPREDICT_* settings or a store path that does not
    exist, and (exit 1) when the port is taken.
    """
    from pydantic import ValidationError

    from metapredict.cli.preflight import missing_store, port_problem
    from metapredict.registry.fetch import Prefetch
    from serving.settings import ServingSettings, settings_problems

    overrides: dict[str, object] = {"host": host, "port": port}
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    try:
        settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        problems = settings_problems(err)
        plural = "s" if len(problems) > 1 else ""
        _refuse(f"invalid environment variable{plural}: {'; '.join(problems)} (fix or unset it)", 2)
    problem = missing_store(settings)
    if problem is not None:
        _refuse(problem, 2)
    problem = port_problem(host, port)
    if problem is not None:
        _refuse(problem, 1)
    if workers > 1:
        _serve_workers(settings, poll_seconds, workers)
        return
    # Find the champions now: read a local SQLite registry directly, or else start a child
    # process that asks MLflow's client on the other core while this one imports the service.
    with _sigterm_exits_cleanly(), Prefetch(settings.tasks, settings.alias, settings) as prefetch:
        import uvicorn

        from serving.app import create_app

        app = create_app(settings, startup_loader=prefetch.load, startup_probe=prefetch.version)
        typer.echo(
            f"metapredict serving on http://{host}:{port} (docs: http://{host}:{port}/docs)",
            err=True,
        )
        uvicorn.run(app, workers=1, **_uvicorn_options(settings))


def _serve_workers(settings: ServingSettings, poll_seconds: float | None, workers: int) -> None:
    """``workers`` processes (:func:`~metapredict.cli.workers.run_workers`), each building the
    app from the environment (the same ``METAPREDICT_*`` settings as this process)."""
    from serving.telemetry import MULTIPROC_ENV

    if poll_seconds is not None:  # the workers read their settings from the environment
        os.environ["METAPREDICT_POLL_SECONDS"] = str(poll_seconds)
    host, port = settings.host, settings.port
    with (
        _sigterm_exits_cleanly(),
        tempfile.TemporaryDirectory(prefix="metapredict-metrics-") as metrics_dir,
    ):
        os.environ.setdefault(MULTIPROC_ENV, metrics_dir)
        typer.echo(
            f"metapredict serving on http://{host}:{port} with {workers} workers "
            f"(docs: http://{host}:{port}/docs)",
            err=True,
        )
        run_workers(_uvicorn_options(settings), workers)


def _uvicorn_options(settings: ServingSettings) -> dict[str, Any]:
    """What every ``serve`` passes uvicorn: the address, the header-timeout protocol and the
    keep-alive and shutdown timeouts (README, Configuration)."""
    from serving.protocol import HeaderTimeoutProtocol

    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_level": "info",
        "loop": "auto",
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }


def _refuse(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}; not serving", err=True)
    raise typer.Exit(code)
