"""``metapredict serve``: the HTTP prediction service on one uvicorn worker."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    poll_seconds: float | None = typer.Option(
        None, "--poll-seconds", min=0, help="Look for a new champion every N s (0: never)."
    ),
) -> None:
    """Serve both champions over HTTP (docs at /docs)."""
    from metapredict.registry.fetch import Prefetch
    from serving.settings import ServingSettings

    overrides: dict[str, object] = {"host": host, "port": port}
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    settings = ServingSettings(**overrides)  # type: ignore[arg-type]
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
