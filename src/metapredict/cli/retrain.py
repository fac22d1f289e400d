"""``metapredict retrain {tropism|dormancy} --data PATH``: challenger, gate, promotion.

Exit codes (for schedulers): 0 promoted (or first champion), 3 kept (the challenger is not
better by the margin, or is worse calibrated), 4 refused (the cohort fails validation),
5 kept because the champion changed during the job, 1 error, 2 bad command line or config.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from metapredict.tasks import Task

EXIT_ERROR = 1
EXIT_BAD_CONFIG = 2


def retrain(
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    data: Path = typer.Option(
        ..., "--data", help="The new cohort (.parquet/.csv/.tsv).", exists=True, dir_okay=False
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Retraining config TOML (gate, bootstrap, drift, validation); "
        "default: training/configs/retrain.toml.",
        exists=True,
        dir_okay=False,
    ),
    training_config: Path | None = typer.Option(
        None,
        "--training-config",
        help="Training config TOML for the challenger; default: training/configs/<task>.toml.",
        exists=True,
        dir_okay=False,
    ),
) -> None:
    """Train a challenger on a new cohort; promote it to @champion only if the gate says so.

    Exit code: 0 promoted, 3 kept, 4 refused, 5 champion changed during the job, 1 error.
    """
    from pydantic import ValidationError

    from metapredict.retraining.config import load_retrain_config
    from metapredict.retraining.job import run_retrain
    from metapredict.training_config import load_training_config

    console = Console(stderr=True, soft_wrap=True)
    try:
        retrain_cfg = load_retrain_config(config)
        task_cfg = load_training_config(task, training_config)
    except (ValueError, ValidationError, OSError) as err:
        console.print(f"[red]invalid config:[/red] {err}")
        raise typer.Exit(EXIT_BAD_CONFIG) from err
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"retraining {task}", total=None)
            result = run_retrain(
                task_cfg,
                data,
                retrain_cfg,
                progress=lambda msg: progress.update(bar, description=msg),
            )
    except Exception as err:
        console.print(f"[red]error: the job failed; the champion is unchanged.[/red] {err}")
        raise typer.Exit(EXIT_ERROR) from err

    rej = result.rejection
    console.print(
        f"validation: {rej.n_rejected} of {rej.n_rows} rows rejected ({rej.share:.1%})"
        + "".join(f"\n  - {n} x {rule}" for rule, n in sorted(rej.reasons.items())[:10])
        + "".join(f"\n  - {e}" for e in rej.table_errors[:10])
    )
    if result.drift_report is not None:
        flagged = result.drift_report.flagged
        console.print(
            f"drift: {len(flagged)} of {len(result.drift_report.features)} features moved"
            + (f": {', '.join(flagged)}" if flagged else "")
        )
    if result.comparison is not None:
        comp = result.comparison
        table = Table(
            title=f"{task}: champion v{result.champion_before} vs challenger "
            f"v{result.challenger_version} on {comp.n:,} held-out patients "
            f"({comp.resamples} paired bootstrap resamples, {comp.confidence:.0%} CI)"
        )
        for name in ("metric", "champion", "challenger", "difference"):
            table.add_column(name, justify="left" if name == "metric" else "right")
        for name in comp.champion:
            table.add_row(
                name,
                *(
                    f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]"
                    for e in (comp.champion[name], comp.challenger[name], comp.difference[name])
                ),
            )
        console.print(table)
    colour = {"promoted": "green", "kept": "yellow"}.get(result.outcome.decision, "red")
    console.print(f"[bold {colour}]{result.reason}[/bold {colour}]")
    console.print(
        f"champion: {result.champion_before or 'none'} -> {result.champion_after or 'none'}; "
        f"run {result.run_id}; exit code {result.exit_code}"
    )
    raise typer.Exit(result.exit_code)
