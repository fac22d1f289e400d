"""``metapredict tune {tropism|dormancy}``: a hyperparameter search that workers share."""

from __future__ import annotations

import json
import os
import socket
import tomllib
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from metapredict.cli.streams import echo_result
from metapredict.tasks import Task

#: Exit codes: bad config or search space; the cohort is unusable.
BAD_CONFIG = 2
UNUSABLE = 1


def tune(
    ctx: typer.Context,
    task: Task = typer.Argument(..., help="tropism or dormancy"),
    trials: int = typer.Option(
        ..., "--trials", min=1, help="Complete trials the study should hold (all workers)."
    ),
    study: str = typer.Option(
        ..., "--study", help="Study name; workers naming the same study share its trials."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Optuna storage URL shared by the workers (e.g. postgresql://user@host/optuna); "
        "default: sqlite:///<project store folder>/optuna.db.",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Cohort file (.parquet/.csv/.tsv); default: simulate the config's cohort.",
        exists=True,
        dir_okay=False,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Base training config TOML (what is not tuned); default: "
        "training/configs/<task>.toml.",
        exists=True,
        dir_okay=False,
    ),
    space: Path | None = typer.Option(
        None,
        "--space",
        help="TOML overriding parameters' ranges, e.g. [n_estimators] low = 50, high = 200.",
        exists=True,
        dir_okay=False,
    ),
    best_config: Path | None = typer.Option(
        None,
        "--best-config",
        help="Where to write the best parameters as a training config; default: "
        "<task>-<study>.toml in the current directory.",
        dir_okay=False,
    ),
    register: bool = typer.Option(
        True,
        "--register/--no-register",
        help="Train the best config and register it as a challenger for the gate.",
    ),
    heartbeat: int = typer.Option(
        10, "--heartbeat", min=1, help="Seconds between a running trial's heartbeats."
    ),
    grace: int = typer.Option(
        30,
        "--grace",
        min=1,
        help="Seconds without a heartbeat before a trial counts as dead and is retried.",
    ),
) -> None:
    """Search LightGBM hyperparameters with Optuna (TPE, pruning on CV folds).

    Run the same command in several processes or on several machines with one --storage URL
    to share the study. When it holds --trials complete trials, one worker writes the best
    parameters as a training config and retrains with it on the same cohort through the
    retraining job: the model is registered as @challenger and the gate decides on promotion.
    Prints a JSON summary. Exit codes: 0 done; 1 the cohort is unusable; 2 bad config.
    """
    from pydantic import ValidationError

    from metapredict import tuning
    from metapredict.schema import CohortValidationError
    from metapredict.training_config import load_training_config

    console = Console(stderr=True, soft_wrap=True)
    try:
        base = load_training_config(task, config)
        overrides = tomllib.loads(space.read_text()) if space is not None else None
        ranges = tuning.search_space(task, overrides)
    except (ValueError, ValidationError, OSError, tomllib.TOMLDecodeError) as err:
        console.print(f"[red]invalid config or search space:[/red] {err}")
        raise typer.Exit(BAD_CONFIG) from err
    url = storage or tuning.default_storage_url()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"tuning {task}", total=None)
            outcome = tuning.run_worker(
                base,
                study_name=study,
                trials=trials,
                data=data,
                storage_url=url,
                space=ranges,
                heartbeat_s=heartbeat,
                grace_s=grace,
                progress=lambda msg: progress.update(bar, description=msg),
            )
    except CohortValidationError as err:
        console.print(f"[red]the cohort breaks the schema; nothing was tuned.[/red]\n{err}")
        raise typer.Exit(UNUSABLE) from err
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(UNUSABLE) from err

    result: dict[str, object] = {
        "study": study,
        "storage": url,
        "worker": worker,
        "trials_run_here": outcome.trials_run,
        "trials": outcome.counts,
        "best_value": outcome.best_value,
        "best_params": outcome.best_params,
        "parent_run_id": outcome.parent_run_id,
        "final_step": False,
    }
    console.print(
        f"study {study}: {outcome.counts['complete']} complete, {outcome.counts['pruned']} "
        f"pruned, {outcome.counts['fail']} failed trials ({outcome.trials_run} run here)"
    )
    if outcome.best_value is not None and tuning.claim_final_step(study, url, worker):
        result |= _final_step(task, base, outcome, study, data, best_config, register, console)
    echo_result(ctx, json.dumps(result))


def _final_step(
    task: Task,
    base: object,
    outcome: object,
    study: str,
    data: Path | None,
    best_config: Path | None,
    register: bool,
    console: Console,
) -> dict[str, object]:
    from metapredict import tuning
    from metapredict.assessment import MAIN_METRIC
    from metapredict.registry import studies
    from metapredict.retraining.config import load_retrain_config
    from metapredict.retraining.job import run_retrain
    from metapredict.training_config import DormancyConfig, TropismConfig

    assert isinstance(base, TropismConfig | DormancyConfig)
    assert isinstance(outcome, tuning.WorkerOutcome)
    main = MAIN_METRIC[task]
    best = tuning.config_with(base, outcome.best_params)
    path = best_config or Path(f"{task}-{study}.toml")
    header = [
        f"{task}: the best of Optuna study '{study}' ({outcome.counts['complete']} complete "
        f"trials), CV {main} {outcome.best_value:.4f}.",
        f"Written by `metapredict tune`; train with: metapredict train {task} --config {path.name}",
    ]
    tuning.write_config(best, path, header)
    studies.finish_parent_run(
        outcome.parent_run_id,
        metrics={f"best_cv_{main}": float(outcome.best_value or float("nan"))}
        | {f"trials_{k}": float(v) for k, v in outcome.counts.items() if v},
        tags={"best_params": json.dumps(outcome.best_params)},
        config_text=path.read_text(),
    )
    console.print(f"wrote the best parameters to {path}")
    out: dict[str, object] = {"final_step": True, "best_config": str(path)}
    if not register:
        return out
    console.print("training the best config as a challenger; the retraining gate decides")
    with tuning.simulated_cohort_file(best) if data is None else nullcontext(data) as cohort:
        retrained = run_retrain(best, cohort, load_retrain_config(None))
    console.print(f"retraining gate: {retrained.reason}")
    out |= {
        "challenger_version": retrained.challenger_version,
        "gate_outcome": retrained.outcome.value,
        "champion_version": retrained.champion_after,
    }
    return out
