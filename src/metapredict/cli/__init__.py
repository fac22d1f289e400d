"""The ``metapredict`` command line: one Typer app; each command lives in its own module."""

from __future__ import annotations

import os

import typer

from metapredict.cli import (
    cohort,
    compare,
    convert,
    deconvolve,
    predict,
    retrain,
    serve,
    simulate,
    train,
    tune,
    ui,
)
from metapredict.cli.streams import setup as setup_streams

app = typer.Typer(
    name="metapredict",
    help="Organ tropism and late-relapse risk from the immune infiltrate of a primary tumour.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Typer's rich help shows `<bool>` after every flag, as if it took a value; click's plain
    # help lists flags as flags.
    rich_markup_mode=None,
)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
) -> None:
    # MLflow's usage telemetry would send reports over the network; off unless the user asks
    # (MLFLOW_DISABLE_TELEMETRY=false). Child processes (the UI, `mlflow run`) inherit it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # logs and progress on stderr; stdout carries only a command's result (cli/streams.py)
    setup_streams(ctx, verbose=verbose)


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
app.command(name="convert-legacy")(convert.convert_legacy)
