"""``metapredict predict``: score a cohort file with a registered model (batch scoring)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from metapredict.cli.streams import echo_result
from metapredict.tasks import Task

if TYPE_CHECKING:
    from metapredict.batch_scoring import ScoringSummary
    from metapredict.predictor import Predictor

#: Exit codes: rows broke the schema (nothing written without --skip-invalid); the input, the
#: output path or the model cannot be used at all.
INVALID_ROWS = 1
UNUSABLE = 2
#: Problems printed to stderr (the report file has them all).
SHOWN_PROBLEMS = 10


class Engine(StrEnum):
    local = "local"
    spark = "spark"


def predict(
    ctx: typer.Context,
    task: Task = typer.Option(..., "--task", help="tropism or dormancy"),
    data: Path = typer.Option(
        ..., "--data", help="Cohort file to score (.parquet, .csv or .tsv).", dir_okay=False
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output file (.parquet or .csv; the spark engine writes a Parquet directory).",
    ),
    version: str | None = typer.Option(
        None, "--version", help="Registered model version to use (instead of an alias)."
    ),
    alias: str | None = typer.Option(
        None, "--alias", help="Registered model alias to use (default: champion)."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Add each patient's top features (TreeSHAP; slower)."
    ),
    engine: Engine = typer.Option(
        Engine.local,
        "--engine",
        help="local (one process, streaming) or spark (a Parquet directory as output).",
    ),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Score the valid rows and list the invalid ones in the report, instead of failing.",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Where to write the invalid rows (row, id, field, rule); default: "
        "<out>.invalid-rows.csv beside the output.",
        dir_okay=False,
    ),
    master: str | None = typer.Option(
        None,
        "--master",
        help="Spark master URL for --engine spark (e.g. spark://host:7077); default: the "
        "spark-submit setting, else local[*].",
    ),
) -> None:
    """Score every patient of a cohort file with the registered model; write the answers.

    The output has one row per scored patient with the fields of the HTTP API's answer
    (probabilities, intervals, ranked sites or risk group, top features with --explain,
    missing inputs, warnings) and is written atomically. Rows that break the schema are
    reported (row, field, rule) and never scored: by default they fail the run (exit 1,
    nothing written but the report); --skip-invalid scores the rest. Prints a JSON summary.
    Exit codes: 0 scored; 1 invalid rows; 2 the input, output path or model cannot be used.
    """
    from metapredict import batch_scoring
    from metapredict.registry import CHAMPION, ModelNotFoundError, load

    console = Console(stderr=True, soft_wrap=True)
    if version is not None and alias is not None:
        console.print("[red]error:[/red] give --version or --alias, not both")
        raise typer.Exit(UNUSABLE)
    try:
        if engine is Engine.local:
            batch_scoring.output_kind(out)
        if version is not None:
            from metapredict.registry.loader import load_version

            predictor = load_version(task, version)
        else:
            predictor = load(task, alias or CHAMPION)
        if engine is Engine.spark:
            from metapredict import spark_scoring

            summary = spark_scoring.score_file(
                predictor,
                data,
                out,
                explain=explain,
                skip_invalid=skip_invalid,
                report=report,
                master=master,
            )
        else:
            summary = _local(predictor, data, out, explain, skip_invalid, report, console)
    except ModelNotFoundError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(UNUSABLE) from err
    except batch_scoring.BatchInputError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(UNUSABLE) from err

    result = {
        "task": task,
        "model": {
            "name": predictor.info.name,
            "version": predictor.info.version,
            "alias": predictor.info.alias,
        },
        "engine": engine.value,
        "rows_read": summary.rows_read,
        "rows_scored": summary.rows_scored,
        "invalid_rows": summary.invalid_rows,
        "output": str(summary.output) if summary.output else None,
        "report": str(summary.report) if summary.report else None,
    }
    echo_result(ctx, json.dumps(result))
    if summary.problems:
        shown = summary.problems[:SHOWN_PROBLEMS]
        for p in shown:
            where = f"row {p.row}" + (f" (id {p.id})" if p.id else "")
            console.print(f"  {where}, field {p.field or '-'}: {p.rule}")
        if summary.invalid_rows > len({p.row for p in shown}):
            console.print(f"  ... all of them in {summary.report}")
        if not skip_invalid:
            console.print(
                f"[red]{summary.invalid_rows} row(s) break the schema; nothing was scored.[/red] "
                f"Fix them or rerun with --skip-invalid (report: {summary.report})"
            )
            raise typer.Exit(INVALID_ROWS)
        console.print(
            f"[yellow]{summary.invalid_rows} invalid row(s) left out[/yellow] "
            f"(report: {summary.report})"
        )
    console.print(f"scored {summary.rows_scored:,} patient(s) into {summary.output}")


def _local(
    predictor: Predictor,
    data: Path,
    out: Path,
    explain: bool,
    skip_invalid: bool,
    report: Path | None,
    console: Console,
) -> ScoringSummary:
    from metapredict import batch_scoring

    total = batch_scoring.count_rows(data) if data.is_file() else None
    columns = (
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("scoring", total=total)
        return batch_scoring.score_file(
            predictor,
            data,
            out,
            explain=explain,
            skip_invalid=skip_invalid,
            report=report,
            progress=lambda rows: progress.advance(bar, rows),
        )
