"""The ``metapredict`` command line: one Typer app; each command lives in its own module."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console
from rich.logging import RichHandler

from metapredict.cli import (
    cohort,
    compare,
    deconvolve,
    predict,
    retrain,
    serve,
    simulate,
    train,
    tune,
    ui,
)

app = typer.Typer(
    name="metapredict",
    help="Organ tropism and late-relapse risk from the immune infiltrate of a primary tumour.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
) -> None:
    # MLflow's usage telemetry would send reports over the network; off unless the user asks
    # (MLFLOW_DISABLE_TELEMETRY=false). Child processes (the UI, `mlflow run`) inherit it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        # logs go to stderr: stdout carries only a command's result
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
        force=True,
    )


app.command(name="simulate")(simulate.simulate)
app.command(name="train")(train.train)
app.command(name="serve")(serve.serve)
app.add_typer(cohort.app, name="cohort")
app.command(name="deconvolve")(deconvolve.deconvolve)
app.command(name="retrain")(retrain.retrain)
app.command(name="compare")(compare.compare)
app.command(name="ui")(ui.ui)
app.command(name="predict")(predict.predict)
app.command(name="tune")(tune.tune)
