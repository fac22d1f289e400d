"""``metapredict retrain {tropism|dormancy} --data PATH``: challenger, gate, promotion.

Exit codes (for schedulers): 0 promoted (or first champion), 3 kept (the challenger is not
better by the margin, or is worse calibrated), 4 refused (the cohort fails validation),
5 kept because the champion changed during the job, 1 error, 2 bad command line or config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from metapredict.cli.messages import describe
from metapredict.tasks import Task

if TYPE_CHECKING:
    from metapredict.retraining.job import RetrainResult

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
    from metapredict.retraining.config import default_retrain_config_path, load_retrain_config
    from metapredict.retraining.job import run_retrain
    from metapredict.training_config import default_config_path, load_training_config

    console = Console(stderr=True, soft_wrap=True)
    source = config or default_retrain_config_path()
    try:
        retrain_cfg = load_retrain_config(config)
        source = training_config or default_config_path(task)
        task_cfg = load_training_config(task, training_config)
    except (ValueError, OSError) as err:
        console.print(f"[red]invalid config:[/red] {escape(describe(err, source))}")
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
        console.print(
            f"[red]error: the job failed; the champion is unchanged.[/red] {escape(describe(err))}"
        )
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
        console.print(comparison_table(result, task))
    colour = {"promoted": "green", "kept": "yellow"}.get(result.outcome.decision, "red")
    console.print(f"[bold {colour}]{result.reason}[/bold {colour}]")
    console.print(
        f"champion: {result.champion_before or 'none'} -> {result.champion_after or 'none'}; "
        f"run {result.run_id}; exit code {result.exit_code}"
    )
    raise typer.Exit(result.exit_code)


def comparison_table(result: RetrainResult, task: str) -> Table:
    """Champion vs challenger on the held-out patients; metric names are never cut."""
    assert result.comparison is not None
    comp = result.comparison
    table = Table(
        title=f"{task}: champion v{result.champion_before} vs challenger "
        f"v{result.challenger_version} on {comp.n:,} held-out patients "
        f"({comp.resamples} paired bootstrap resamples, {comp.confidence:.0%} CI)"
    )
    table.add_column("metric", no_wrap=True, min_width=max(map(len, comp.champion), default=6))
    for name in ("champion", "challenger", "difference"):
        table.add_column(name, justify="right", min_width=len(name))
    for name in comp.champion:
        table.add_row(
            name,
            *(
                f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]"
                for e in (comp.champion[name], comp.challenger[name], comp.difference[name])
            ),
        )
    return table
