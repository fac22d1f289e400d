"""``metapredict train {tropism|dormancy}``: train, evaluate, log and register."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from metapredict.cli.messages import describe
from metapredict.tasks import Task

if TYPE_CHECKING:
    from metapredict.pipeline import TrainingOutcome

#: Exit code of a training whose model the champion guard refused (metapredict.assessment).
NOT_CHAMPION = 3

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
        False,
        "--if-missing",
        help="Do nothing when the task already has a champion.",
    ),
) -> None:
    """Train the LightGBM model and its baseline with K-fold CV, log them to MLflow, register.

    Exit codes: 0 registered (champion, or challenger when a champion exists); 1 the cohort is
    unusable for the task (invalid, or without the task's labels), nothing registered; 2 bad
    config; 3 trained and registered without an alias because the model is not fit to be
    champion (constant, indistinguishable from chance, or clearly worse than its baseline).
    """
    from metapredict import registry
    from metapredict.evaluation import MissingLabels
    from metapredict.pipeline import run_training
    from metapredict.schema import CohortValidationError
    from metapredict.training_config import default_config_path, load_training_config

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
        source = config or default_config_path(task)
        console.print(f"[red]invalid training config:[/red] {escape(describe(err, source))}")
        raise typer.Exit(2) from err
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"training {task}", total=None)
            outcome = run_training(
                cfg, data=data, progress=lambda msg: progress.update(bar, description=msg)
            )
    except MissingLabels as err:
        where = f"{data}: " if data is not None else ""
        console.print(
            f"[red]refused:[/red] {escape(where + str(err))}; nothing was trained or registered"
        )
        raise typer.Exit(1) from err
    except CohortValidationError as err:
        cohort = str(data) if data is not None else "the simulated cohort"
        console.print(
            f"[red]{escape(cohort)} breaks the schema; nothing was trained or registered.[/red]"
        )
        console.print(str(err), markup=False, highlight=False)
        raise typer.Exit(1) from err
    except ValueError as err:
        console.print(f"[red]error:[/red] {escape(describe(err))}")
        raise typer.Exit(1) from err

    console.print(results_table(outcome, task, cfg.cv.folds))
    best = outcome.results["lightgbm"]
    main = "macro_auroc" if task == "tropism" else "harrell_c"
    mean, low, high = best.cv_interval(main)
    console.print(
        f"lightgbm CV {main} {mean:.3f} (95 % interval {low:.3f}-{high:.3f}, corrected for "
        "overlapping folds)"
    )
    for name, reason in best.reasons.items():
        if name in KEY_METRICS[task] or name == main:
            console.print(f"{name} is missing: {reason}")
    for family, result in outcome.results.items():
        for flag in result.flags:
            console.print(f"[yellow]flag ({family}):[/yellow] {flag}")
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if outcome.sizing:
        chosen = ", ".join(f"{k}={v}" for k, v in outcome.sizing.items())
        console.print(f'size rule ("auto" in the config): {chosen}')
    if outcome.sites:
        console.print(f"sites trained: {', '.join(outcome.sites)}")
    for note in outcome.notes:
        console.print(f"note: {note}")
    ratios = best.ratio_to_oracle
    if main in ratios:
        console.print(f"lightgbm test {main} = {ratios[main]:.3f} x oracle")
    reg = outcome.registered
    if outcome.refusal is not None:
        console.print(
            f"[red]not champion:[/red] {outcome.refusal}; registered {reg.name} version "
            f"{reg.version} without an alias (run {reg.run_id}) for inspection"
        )
        raise typer.Exit(NOT_CHAMPION)
    console.print(
        f"registered [bold]{reg.name}[/bold] version {reg.version} as @{reg.alias} "
        f"(run {reg.run_id}) in {outcome.seconds:.0f} s"
    )


def results_table(outcome: TrainingOutcome, task: str, folds: int) -> Table:
    """CV and test metrics per family; headers stay whole on an 80-column terminal (values
    wrap instead), so no metric or family name is ever cut."""
    repeats = f"{outcome.repeats} x " if outcome.repeats > 1 else ""
    table = Table(
        title=f"{task}: {repeats}{folds}-fold CV on {outcome.n_train:,} patients, "
        f"test on {outcome.n_test:,} (CV: mean ± SD over folds; test: value [95 % bootstrap "
        "interval])",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("metric", no_wrap=True, min_width=max(map(len, KEY_METRICS[task])))
    families = list(outcome.results)
    for family in families:
        label = family.replace("_", " ")  # wraps between words, never inside a name
        widest = max(len(word) for word in label.split())
        table.add_column(f"{label}\nCV", justify="right", min_width=widest)
        table.add_column(f"{label}\ntest", justify="right", min_width=widest)
    if outcome.oracle is not None:
        table.add_column("oracle\ntest", justify="right", min_width=len("oracle"))
    for name in KEY_METRICS[task]:
        row = [name]
        for family in families:
            r = outcome.results[family]
            row += [_cv(r.cv, name), _test(r.test, r.test_ci, name)]
        if outcome.oracle is not None:
            row.append(_fmt(outcome.oracle.test.get(name)))
        table.add_row(*row)
    return table


def _cv(values: dict[str, float], name: str) -> str:
    mean, sd = values.get(name), values.get(f"{name}_std")
    return "-" if mean is None else f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f}"


def _test(values: dict[str, float], ci: dict[str, tuple[float, float]], name: str) -> str:
    value = values.get(name)
    if value is None or value != value:
        return "-"
    if name in ci:
        low, high = ci[name]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
