"""``metapredict train {tropism|dormancy}``: train, evaluate, log and register."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from metapredict.tasks import Task

KEY_METRICS = {
    "tropism": ("macro_auroc", "macro_auprc", "macro_brier", "macro_calibration_error"),
    "dormancy": ("harrell_c", "uno_c", "td_auc_36", "td_auc_60", "td_auc_120", "integrated_brier"),
}


def train(
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Cohort file (.parquet/.csv/.tsv); default: simulate the default cohort.",
        exists=True,
        dir_okay=False,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Training config TOML; default: training/configs/<task>.toml.",
        exists=True,
        dir_okay=False,
    ),
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the task already has a champion."
    ),
) -> None:
    """Train the LightGBM model and its baseline with K-fold CV, log them to MLflow, register."""
    from metapredict import registry
    from metapredict.evaluation import MissingLabels
    from metapredict.pipeline import run_training
    from metapredict.schema import CohortValidationError
    from metapredict.training_config import load_training_config

    console = Console(stderr=True, soft_wrap=True)
    if if_missing:
        try:
            version = registry.current_version(task, registry.CHAMPION)
        except registry.ModelNotFoundError:
            pass
        else:
            console.print(
                f"{registry.model_name(task)} already has a champion (version {version}); "
                "not training (drop --if-missing to train a new version)"
            )
            return
    try:
        cfg = load_training_config(task, config)
    except ValueError as err:
        console.print(f"[red]invalid training config:[/red] {err}")
        raise typer.Exit(2) from err
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"training {task}", total=None)
            outcome = run_training(
                cfg, data=data, progress=lambda msg: progress.update(bar, description=msg)
            )
    except MissingLabels as err:
        console.print(f"[red]refused:[/red] {err}; nothing was trained or registered")
        raise typer.Exit(1) from err
    except CohortValidationError as err:
        console.print(
            f"[red]the cohort breaks the schema; nothing was trained or registered.[/red]\n{err}"
        )
        raise typer.Exit(1) from err
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from err

    table = Table(
        title=f"{task}: {cfg.cv.folds}-fold CV on {outcome.n_train:,} patients, "
        f"test on {outcome.n_test:,}"
    )
    table.add_column("metric")
    families = list(outcome.results)
    for family in families:
        table.add_column(f"{family}\nCV", justify="right")
        table.add_column(f"{family}\ntest", justify="right")
    if outcome.oracle is not None:
        table.add_column("oracle\ntest", justify="right")
    for name in KEY_METRICS[task]:
        row = [name]
        for family in families:
            r = outcome.results[family]
            row += [_fmt(r.cv.get(name)), _fmt(r.test.get(name))]
        if outcome.oracle is not None:
            row.append(_fmt(outcome.oracle.test.get(name)))
        table.add_row(*row)
    console.print(table)
    if outcome.sites:
        console.print(f"sites trained: {', '.join(outcome.sites)}")
    for note in outcome.notes:
        console.print(f"note: {note}")
    ratios = outcome.results["lightgbm"].ratio_to_oracle
    main = "macro_auroc" if task == "tropism" else "harrell_c"
    if main in ratios:
        console.print(f"lightgbm test {main} = {ratios[main]:.3f} x oracle")
    reg = outcome.registered
    console.print(
        f"registered [bold]{reg.name}[/bold] version {reg.version} as @{reg.alias} "
        f"(run {reg.run_id}) in {outcome.seconds:.0f} s"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
