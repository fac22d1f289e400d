"""``metapredict ui``: the MLflow UI on the project store, with light settings.

``mlflow server`` starts many workers and a job runner by default (~3 GB measured); one worker
and no job execution need ~490 MB. The command is built by :func:`ui_command` (pure, tested);
the CLI replaces itself with it (``exec``), in the foreground until Ctrl-C. Before that it saves
each task experiment's "Headline metrics" view (:mod:`metapredict.registry.ui_view`) and prints,
on stderr, a link per task that opens the runs table on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import typer

from metapredict.registry.store import store_kind
from metapredict.settings import StoreSettings, get_store_settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


@dataclass(frozen=True)
class UICommand:
    argv: list[str]
    env: dict[str, str]


def ui_command(
    settings: StoreSettings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    bin_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> UICommand:
    """The ``mlflow server`` argv and environment for the store in ``settings``."""
    bin_dir = bin_dir or Path(sys.executable).parent
    environ = os.environ if environ is None else environ
    mlflow = bin_dir / "mlflow"
    root = settings.resolved_artifact_root().resolve()
    argv = [
        str(mlflow) if mlflow.exists() else sys.executable,
        *([] if mlflow.exists() else ["-m", "mlflow"]),
        "server",
        "--backend-store-uri",
        settings.resolved_tracking_uri(),
        "--default-artifact-root",
        root.as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    path = environ.get("PATH", "")
    env = {
        **environ,
        # the server execs uvicorn/gunicorn from the venv
        "PATH": f"{bin_dir}{os.pathsep}{path}" if path else str(bin_dir),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return UICommand(argv=argv, env=env)


def _echo_view_links(settings: StoreSettings, base_url: str) -> None:
    """On stderr, each task's runs table opened on the saved view with its headline metrics as
    columns (written into the experiment first: :mod:`metapredict.registry.ui_view`)."""
    from metapredict.registry.store import connect
    from metapredict.registry.ui_view import headline_view_links

    client, _, _ = connect(settings)
    for task, link in headline_view_links(client, base_url).items():
        typer.echo(f"  {task} runs, headline metrics as columns: {link}", err=True)


def ui(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Interface to bind (local only)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535),
) -> None:
    """Open the MLflow UI on the project store (one worker, no job execution)."""
    settings = get_store_settings()
    uri = settings.resolved_tracking_uri()
    if store_kind(uri) == "http":
        # A tracking server serves its own UI: nothing to start, print where it is.
        typer.echo(f"the tracking server serves the MLflow UI at {uri}", err=True)
        _echo_view_links(settings, uri)
        typer.echo(uri)
        return
    from metapredict.cli.preflight import missing_store, port_problem

    problem = missing_store(settings) or port_problem(host, port)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    command = ui_command(settings, host=host, port=port)
    # MLflow 3's UI opens in its GenAI mode unless told otherwise; this link opens it in the
    # model-training mode (runs, metrics, models). docs/mlflow-ui.md shows where to click.
    typer.echo(
        f"MLflow UI on http://{host}:{port}/#/experiments?workflowType=machine_learning "
        "(Ctrl-C to stop; docs/mlflow-ui.md shows where to click)",
        err=True,
    )
    _echo_view_links(settings, f"http://{host}:{port}")
    # Replace this process (no idle Python parent holding ~200 MB; signals reach the server).
    os.execve(command.argv[0], command.argv, command.env)
