"""``metapredict compare {tropism|dormancy}``: registered versions side by side."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum

import typer
from rich.console import Console
from rich.table import Table

from metapredict.training_config import Task

#: Columns per task: (header, metric logged by the training run).
KEY_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "tropism": (
        ("test AUROC", "test_macro_auroc"),
        ("x oracle", "test_macro_auroc_ratio_to_oracle"),
        ("CV AUROC", "cv_macro_auroc"),
        ("calib. err.", "test_macro_calibration_error"),
        ("Brier", "test_macro_brier"),
    ),
    "dormancy": (
        ("test C", "test_harrell_c"),
        ("x oracle", "test_harrell_c_ratio_to_oracle"),
        ("CV C", "cv_harrell_c"),
        ("int. Brier", "test_integrated_brier"),
        ("Uno C", "test_uno_c"),
    ),
}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def compare(
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    output: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table (rich) or json (stdout)."
    ),
) -> None:
    """List the registered versions of a task's model with their key metrics and aliases."""
    from metapredict.registry.comparison import model_versions

    versions = model_versions(task)
    if output is OutputFormat.json:
        typer.echo(json.dumps([v.as_dict() for v in versions], indent=2, sort_keys=True))
        return
    console = Console()
    if not versions:
        console.print(f"no registered versions of metapredict-{task}; train one first")
        return
    table = Table(title=f"metapredict-{task}: registered versions (newest first)")
    table.add_column("version", justify="right")
    table.add_column("aliases")
    table.add_column("registered")
    for header, _ in KEY_METRICS[task]:
        table.add_column(header, justify="right")
    table.add_column("retrain decision")
    table.add_column("run")
    for v in versions:
        when = datetime.fromtimestamp(v.created_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            v.version,
            ", ".join(f"@{a}" for a in v.aliases) or "-",
            when,
            *(_fmt(v.metrics.get(metric)) for _, metric in KEY_METRICS[task]),
            v.tags.get("retrain_outcome", "-"),
            f"{v.run_name} {v.run_id[:8]}",
        )
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
