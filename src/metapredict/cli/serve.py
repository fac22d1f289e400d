"""``metapredict serve``: the HTTP prediction service on one uvicorn worker."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import typer

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
) -> None:
    """Serve both champions over HTTP (docs at /docs)."""
    from pydantic import ValidationError

    from metapredict.registry.fetch import Prefetch
    from serving.settings import ServingSettings, settings_problems

    overrides: dict[str, object] = {"host": host, "port": port}
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    try:
        settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        for line in settings_problems(e):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    # Find the champions now: read a local SQLite registry directly, or else start a child
    # process that asks MLflow's client on the other core while this one imports the service.
    with _sigterm_exits_cleanly(), Prefetch(settings.tasks, settings.alias, settings) as prefetch:
        import uvicorn

        from serving.app import create_app
        from serving.protocol import HeaderTimeoutProtocol

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
            http=HeaderTimeoutProtocol,
            timeout_keep_alive=settings.keep_alive_timeout,
            timeout_graceful_shutdown=settings.shutdown_timeout,
        )
