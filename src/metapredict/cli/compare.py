"""``metapredict compare {tropism|dormancy}``: registered versions side by side."""

from __future__ import annotations

import json
from enum import StrEnum

import typer
from rich import box
from rich.table import Table

from metapredict.cli.streams import echo_result, result_console
from metapredict.tasks import Task

#: Columns per task: (header, metric logged by the training run).
KEY_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "tropism": (
        ("AUROC", "test_macro_auroc"),
        ("/oracle", "test_macro_auroc_ratio_to_oracle"),
        ("CV", "cv_macro_auroc"),
        ("ECE", "test_macro_calibration_error"),
        ("Brier", "test_macro_brier"),
    ),
    "dormancy": (
        ("C", "test_harrell_c"),
        ("/oracle", "test_harrell_c_ratio_to_oracle"),
        ("CV", "cv_harrell_c"),
        ("IBS", "test_integrated_brier"),
        ("Uno", "test_uno_c"),
    ),
}


#: Short labels of the ``retrain_outcome`` version tag.
_OUTCOME = {
    "promoted": "promoted",
    "kept": "kept",
    "champion_changed": "raced",
    "refused": "refused",
}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def compare(
    ctx: typer.Context,
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    output: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table (rich) or json (stdout)."
    ),
) -> None:
    """List the registered versions of a task's model with their key metrics and aliases."""
    from metapredict.cli.preflight import missing_store
    from metapredict.registry.comparison import model_versions
    from metapredict.settings import get_store_settings

    settings = get_store_settings()
    problem = missing_store(settings)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    versions = model_versions(task, settings)
    if output is OutputFormat.json:
        echo_result(ctx, json.dumps([v.as_dict() for v in versions], indent=2, sort_keys=True))
        return
    console = result_console(ctx)
    if not versions:
        console.print(f"no registered versions of metapredict-{task}; train one first")
        return
    table = Table(
        title=f"metapredict-{task}: registered versions, newest first "
        "(metrics of each version's training run)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("ver", justify="right", no_wrap=True)
    table.add_column("aliases", no_wrap=True)
    for header, _ in KEY_METRICS[task]:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("retrain", no_wrap=True)
    table.add_column("run", no_wrap=True)
    for v in versions:
        table.add_row(
            v.version,
            " ".join(f"@{a}" for a in v.aliases) or "-",
            *(_fmt(v.metrics.get(metric)) for _, metric in KEY_METRICS[task]),
            _OUTCOME.get(v.tags.get("retrain_outcome", ""), "-"),
            v.run_id[:8],
        )
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
