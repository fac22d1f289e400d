"""``metapredict serve``: the HTTP prediction service on one uvicorn worker."""

from __future__ import annotations

from typing import NoReturn

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    poll_seconds: float | None = typer.Option(
        None, "--poll-seconds", min=0, help="Look for a new champion every N s (0: never)."
    ),
) -> None:
    """Serve both champions over HTTP (docs at /docs).

    Refuses to start (exit 2) on invalid METAPREDICT_* settings or a store path that does not
    exist, and (exit 1) when the port is taken.
    """
    from pydantic import ValidationError

    from metapredict.cli.messages import settings_problem
    from metapredict.cli.preflight import missing_store, port_problem
    from metapredict.registry.fetch import Prefetch
    from serving.settings import ServingSettings

    overrides: dict[str, object] = {"host": host, "port": port}
    if poll_seconds is not None:
        overrides["poll_seconds"] = poll_seconds
    try:
        settings = ServingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        _refuse(settings_problem(err), 2)
    problem = missing_store(settings)
    if problem is not None:
        _refuse(problem, 2)
    problem = port_problem(host, port)
    if problem is not None:
        _refuse(problem, 1)
    # Find the champions now: read a local SQLite registry directly, or else start a child
    # process that asks MLflow's client on the other core while this one imports the service.
    with Prefetch(settings.tasks, settings.alias, settings) as prefetch:
        import uvicorn

        from serving.app import create_app

        app = create_app(settings, startup_loader=prefetch.load, startup_probe=prefetch.version)
        typer.echo(
            f"metapredict serving on http://{host}:{port} (docs: http://{host}:{port}/docs)",
            err=True,
        )
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


def _refuse(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}; not serving", err=True)
    raise typer.Exit(code)
