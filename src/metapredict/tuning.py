"""Hyperparameter search with Optuna (``metapredict tune``), shared by any number of workers.

A study lives in an RDB storage (default: SQLite under the project store folder; any
SQLAlchemy URL, e.g. ``postgresql://...``), so several ``metapredict tune`` processes, on one
machine or many, that name the same study and storage share its trials. Each trial:

- takes LightGBM hyperparameters from the task's search space (:data:`SEARCH_SPACES`, the
  TPE sampler) on top of the base training config;
- runs the same K-fold CV on the training split as ``metapredict train`` (same seed, same
  folds, same estimator), reporting the running mean of the task's main metric after each fold
  so the median pruner can stop a poor trial early;
- is logged as a nested MLflow run under the study's parent run, with the metrics named as in
  ``train`` (``cv_<metric>``, ``cv_<metric>_std``).

Workers record heartbeats; a trial whose worker stops beating (killed) is failed after the
grace period by the next worker to start a trial, or by a waiting worker, and re-queued (at
most :data:`MAX_RETRY` times) by :class:`optuna.storages.RetryFailedTrialCallback`; a trial
whose worker died before its first heartbeat is caught too (:func:`fail_dead_trials`). A
worker stops when the study holds the requested number of complete trials; while the last
trials run elsewhere it waits, so a trial left by a dead worker is still retried.

At the end one worker (the first to claim it) writes the best parameters as a training config
TOML (:func:`write_config`) and hands it to the retraining job (:func:`metapredict.retraining
.job.run_retrain`): the model is trained and registered as a challenger and the existing gate
decides whether it becomes champion.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from metapredict import assessment, features
from metapredict.evaluation import TaskData, prepare, score
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.tropism import TropismClassifier
from metapredict.pipeline import load_cohort, resolve_model, resolve_repeats
from metapredict.settings import StoreSettings, get_store_settings, sqlite_path
from metapredict.training_config import DormancyConfig, TrainingConfig, TropismConfig

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]

#: Seconds between a running trial's heartbeats, and without one before it counts as dead.
HEARTBEAT_S = 10
GRACE_S = 30
#: A trial of a dead worker is re-queued this many times at most.
MAX_RETRY = 2
#: Opening a new storage while a process outside our lock creates its tables fails; the next
#: open, a moment later, finds them. Each table is its own statement, so the two may collide
#: on more than one: a few tries, 0.1 s, 0.2 s, ... apart.
CREATE_ATTEMPTS = 5
CREATE_PAUSE_S = 0.1
#: Optuna study attributes: the MLflow parent run, and which worker claimed the final step.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
#: Complete trials before the pruner may prune (it needs a median to compare with).
PRUNER_STARTUP_TRIALS = 3


class ParamRange(BaseModel):
    """One hyperparameter's range: integers or floats, sampled on a log scale or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = False
    kind: Literal["int", "float"] = "float"

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range must start above 0")
        return self


def _int(low: int, high: int, log: bool = False) -> ParamRange:
    return ParamRange(low=low, high=high, log=log, kind="int")


def _float(low: float, high: float, log: bool = False) -> ParamRange:
    return ParamRange(low=low, high=high, log=log)


_LIGHTGBM_SPACE: dict[str, ParamRange] = {
    "n_estimators": _int(50, 600, log=True),
    "learning_rate": _float(0.005, 0.2, log=True),
    "num_leaves": _int(2, 31, log=True),
    "min_child_samples": _int(5, 200, log=True),
    "subsample": _float(0.5, 1.0),
    "colsample_bytree": _float(0.5, 1.0),
    "reg_lambda": _float(0.01, 50.0, log=True),
}

#: The default search space per task (``[model]`` keys of the training config); documented in
#: the README's "Hyperparameter search" section. ``--space`` narrows or widens any of them.
SEARCH_SPACES: dict[str, dict[str, ParamRange]] = {
    "tropism": dict(_LIGHTGBM_SPACE),
    "dormancy": {**_LIGHTGBM_SPACE, "num_leaves": _int(2, 15, log=True)},
}


def search_space(task: str, overrides: dict[str, Any] | None = None) -> dict[str, ParamRange]:
    """The task's space with ``overrides`` (``{param: {low, high, log, kind}}``, e.g. from a
    ``--space`` TOML file) applied; an unknown parameter is an error."""
    space = dict(SEARCH_SPACES[task])
    for name, value in (overrides or {}).items():
        if name not in space:
            raise ValueError(
                f"'{name}' is not a tunable parameter of {task}; choose from: "
                + ", ".join(sorted(space))
            )
        space[name] = ParamRange.model_validate({**space[name].model_dump(), **value})
    return space


def default_storage_url(settings: StoreSettings | None = None) -> str:
    """``sqlite:///<project store folder>/optuna.db``: beside the MLflow database when the
    tracking store is SQLite, else beside its artifacts."""
    settings = settings or get_store_settings()
    database = sqlite_path(settings.resolved_tracking_uri())
    folder = database.parent if database is not None else settings.resolved_artifact_root().parent
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def open_storage(url: str, *, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> Any:
    """The RDB storage with heartbeats and the retry-on-failure callback."""
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes write one SQLite file: wait for the lock rather than fail.
        engine_kwargs["connect_args"] = {"timeout": 60}
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            with _creating(url):
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=grace_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
        except sqlalchemy.exc.DBAPIError as error:
            # A process outside the lock (optuna-dashboard, a notebook's load_study) created
            # the tables while this one did: "table studies already exists" (SQLite),
            # 'relation "studies" already exists' (PostgreSQL), or a duplicate alembic_version
            # row. Once the other process is done, opening again finds them.
            if attempt == CREATE_ATTEMPTS or not _created_elsewhere(error):
                raise
            logger.info("Optuna's tables are being created by another process; opening again")
            time.sleep(CREATE_PAUSE_S * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def _created_elsewhere(error: Exception) -> bool:
    text = str(error)
    return "already exists" in text or "alembic_version" in text


@contextmanager
def _creating(url: str) -> Iterator[None]:
    """One process at a time opens the storage: opening an empty one creates Optuna's tables,
    and two workers started together on a new storage would both create them ("table
    studies already exists"). A file lock beside a SQLite database, a PostgreSQL advisory lock,
    nothing for other databases."""
    from metapredict.registry.promotion import advisory_lock, file_lock

    database = sqlite_path(url)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(database.with_name(database.name + ".create.lock")):
            yield
    elif url.startswith("postgres"):
        with advisory_lock(url, "metapredict-optuna-storage"):
            yield
    else:
        yield


def config_with(base: TrainingConfig, params: dict[str, Any]) -> TrainingConfig:
    """``base`` with the ``[model]`` values of ``params``."""
    raw = base.model_dump()
    raw["model"] = {**raw["model"], **params}
    cls: type[TropismConfig] | type[DormancyConfig] = (
        TropismConfig if base.task == "tropism" else DormancyConfig
    )
    return cls.model_validate(raw)


def make_estimator(config: TrainingConfig, model_args: dict[str, Any]) -> Any:
    """The LightGBM estimator ``metapredict train`` builds from the same config."""
    cat = features.categorical_indices()
    if isinstance(config, TropismConfig):
        return TropismClassifier(**model_args, categorical_features=cat, random_state=config.seed)
    return DiscreteTimeHazard(**model_args, categorical_features=cat, random_state=config.seed)


def cv_folds(config: TrainingConfig, data: TaskData) -> Iterator[tuple[Any, Any]]:
    """The (train, validation) index pairs of ``metapredict train``'s CV on the training split
    (the same splitter and seed as :func:`metapredict.evaluation.cross_validate`)."""
    from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

    repeats = resolve_repeats(config, data)
    folds = config.cv.folds
    splitter: Any = (
        RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=config.seed)
        if repeats > 1
        else StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    )
    yield from splitter.split(data.X[data.train], data.strata[data.train])


def _predict(task: str, estimator: Any, X: Any) -> Any:
    if task == "tropism":
        return estimator.predict_proba(X)
    return estimator.predict_outputs(X)


@dataclass
class TrialResult:
    value: float
    metrics: dict[str, float]


def evaluate_params(
    config: TrainingConfig,
    data: TaskData,
    on_fold: Callable[[int, float], None] | None = None,
) -> TrialResult:
    """CV of ``config``'s LightGBM model: the mean of the task's main metric over folds (what
    ``metapredict train`` reports as ``cv_<metric>``) and every ``cv_`` metric.

    ``on_fold(k, running_mean)`` runs after each fold (the pruning hook; it may raise).
    """
    main = assessment.MAIN_METRIC[config.task]
    model_args, _ = resolve_model(config, data)
    X, y = data.X[data.train], data.y[data.train]
    per_fold: list[dict[str, float]] = []
    for k, (tr, va) in enumerate(cv_folds(config, data), start=1):
        est = make_estimator(config, model_args).fit(X[tr], y[tr])
        per_fold.append(
            score(config.task, y[tr], y[va], _predict(config.task, est, X[va]), data.sites)
        )
        if on_fold is not None:
            values = [f[main] for f in per_fold]
            on_fold(k, float(np.nanmean(values)) if np.isfinite(values).any() else math.nan)
    out: dict[str, float] = {}
    for name in per_fold[0]:
        column = np.array([f[name] for f in per_fold], dtype=float)
        if np.isfinite(column).any():
            out[f"cv_{name}"] = float(np.nanmean(column))
            out[f"cv_{name}_std"] = float(np.nanstd(column))
    return TrialResult(out.get(f"cv_{main}", math.nan), out)


def suggest(trial: optuna.Trial, space: dict[str, ParamRange]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, r in space.items():
        if r.kind == "int":
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


# -- the study ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyHandle:
    study: Any
    created: bool
    parent_run_id: str


def open_study(
    name: str,
    storage: Any,
    task: str,
    *,
    seed: int,
    settings: StoreSettings | None,
    tags: dict[str, str],
) -> StudyHandle:
    """Create the study (and its MLflow parent run), or join it when it exists.

    Creating a study by name is atomic in the storage, so exactly one worker creates the
    parent run; the others wait for its id.
    """
    import optuna

    from metapredict.registry import studies

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=sampler,
            pruner=pruner,
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    task_attr = study.user_attrs.get("task")
    if created:
        study.set_user_attr("task", task)
        parent = studies.create_parent_run(task, name, tags=tags, settings=settings)
        study.set_user_attr(PARENT_RUN_ATTR, parent)
        return StudyHandle(study, True, parent)
    if task_attr is not None and task_attr != task:
        raise ValueError(f"study '{name}' tunes {task_attr}, not {task}; choose another name")
    deadline = time.monotonic() + 120
    while True:
        shared = study.user_attrs.get(PARENT_RUN_ATTR)
        if shared:
            return StudyHandle(study, False, str(shared))
        if time.monotonic() > deadline:  # its creator died before logging the parent run
            parent = studies.create_parent_run(task, name, tags=tags, settings=settings)
            study.set_user_attr(PARENT_RUN_ATTR, parent)
            return StudyHandle(study, False, parent)
        time.sleep(1.0)


def fail_dead_trials(study: Any, storage: Any, given: set[int], *, after_s: float) -> None:
    """Fail (and so re-queue) the running trials whose worker died.

    Optuna fails a running trial once its last heartbeat is older than the grace period, but
    a trial with no heartbeat at all never counts as stale: a worker killed between creating
    its trial and its heartbeat thread's first beat leaves the trial running for ever, and
    every other worker would wait for it. So each running trial older than ``after_s`` (the
    heartbeat interval plus the grace period: a live worker has beaten by then) is given one
    heartbeat by this worker (``given`` remembers which): a live worker's own next beat
    replaces it, while a dead worker's trial goes stale one grace period later and is failed
    by :func:`optuna.storages.fail_stale_trials` like any other.
    """
    import datetime

    import optuna
    from optuna.trial import TrialState

    now = datetime.datetime.now()
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start
        if trial.number in given or started is None:
            continue
        if (now - started).total_seconds() > after_s:
            storage.record_heartbeat(
                storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            )
            given.add(trial.number)
    optuna.storages.fail_stale_trials(study)


def trial_counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


@dataclass
class WorkerOutcome:
    study: str
    trials_run: int
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any]
    parent_run_id: str


def run_worker(
    base: TrainingConfig,
    *,
    study_name: str,
    trials: int,
    data: Path | None = None,
    storage_url: str | None = None,
    space: dict[str, ParamRange] | None = None,
    settings: StoreSettings | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    grace_s: int = GRACE_S,
    progress: Progress | None = None,
) -> WorkerOutcome:
    """Join (or create) the study and run trials until it holds ``trials`` complete ones."""
    import optuna
    from optuna.trial import TrialState
    from threadpoolctl import threadpool_limits

    from metapredict.registry import studies

    step = progress or (lambda message: None)
    task = base.task
    space = space or search_space(task)
    storage = open_storage(
        storage_url or default_storage_url(settings), heartbeat_s=heartbeat_s, grace_s=grace_s
    )
    step("loading and validating the cohort")
    cohort = load_cohort(data, base)
    task_data = prepare(task, cohort.frame, test_size=base.data.test_size, seed=base.seed)
    tags = {"task": task, "optuna_study": study_name, "data_digest": cohort.digest, **cohort.tags}
    handle = open_study(study_name, storage, task, seed=base.seed, settings=settings, tags=tags)
    study = handle.study
    main = assessment.MAIN_METRIC[task]

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        config = config_with(base, params)
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        retried = optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)
        run_tags = {
            **tags,
            "optuna_trial": str(trial.number),
            **({"optuna_retry_of": str(retried)} if retried is not None else {}),
        }
        with studies.trial_run(
            task,
            handle.parent_run_id,
            f"trial-{trial.number}",
            run_tags,
            settings,
            stopped=(optuna.TrialPruned,),
        ) as run:
            run.log_params(params)
            step(f"trial {trial.number}: CV")

            def on_fold(k: int, running: float) -> None:
                run.log_metrics({f"cv_{main}": running}, step=k)
                trial.report(running, k)
                step(f"trial {trial.number}: fold {k}, running {main} {running:.4f}")
                if trial.should_prune():
                    run.set_tags({"optuna_state": "PRUNED"})
                    raise optuna.TrialPruned(f"pruned after fold {k}")

            result = evaluate_params(config, task_data, on_fold)
            run.log_metrics(result.metrics)
            run.set_tags({"optuna_state": "COMPLETE"})
        return result.value

    ran = 0
    heartbeats: set[int] = set()
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            counts = trial_counts(study)
            complete = counts["complete"]
            if complete >= trials:
                break
            if counts["waiting"] == 0 and complete + counts["running"] >= trials:
                # The last trials run on other workers: wait, and fail any whose worker died
                # (its retry is queued as a waiting trial, which this worker then runs).
                fail_dead_trials(study, storage, heartbeats, after_s=heartbeat_s + grace_s)
                time.sleep(min(heartbeat_s, 5))
                continue
            study.optimize(objective, n_trials=1, catch=())
            ran += 1
            last = study.get_trials(deepcopy=False)[-1]
            logger.debug("trial %d: %s", last.number, last.state.name)
    best_value: float | None = None
    best_params: dict[str, Any] = {}
    if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        best_value = float(study.best_value)
        best_params = dict(study.best_params)
    return WorkerOutcome(
        study_name, ran, trial_counts(study), best_value, best_params, handle.parent_run_id
    )


def claim_final_step(study_name: str, storage_url: str, worker: str) -> bool:
    """True for exactly one worker of a study: the one to write the config and register.

    Creating a study by name is atomic in the storage (a unique constraint), so a marker
    study ``<name>.final`` is created by the first worker to ask and refused to the others.
    """
    import optuna

    storage = optuna.storages.RDBStorage(storage_url)
    try:
        marker = optuna.create_study(study_name=f"{study_name}.final", storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    marker.set_user_attr("claimed_by", worker)
    return True


# -- the best config as TOML -------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} to TOML")


def config_toml(config: TrainingConfig, header: list[str]) -> str:
    """``config`` in the layout of ``training/configs/<task>.toml`` (comments: ``header``)."""
    raw = config.model_dump()
    lines = [f"# {line}" for line in header]
    lines += [f"task = {_toml_value(raw.pop('task'))}", f"seed = {_toml_value(raw.pop('seed'))}"]
    for section, values in raw.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_config(config: TrainingConfig, path: Path, header: list[str]) -> None:
    """Write the config TOML atomically (parsed back by :func:`load_training_config`)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(config_toml(config, header))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def simulated_cohort_file(config: TrainingConfig) -> Iterator[Path]:
    """The base config's default simulated cohort as a temporary Parquet file (the retraining
    job reads its cohort from a file)."""
    import tempfile

    from metapredict.simulator import default_config, simulate_cohort

    with tempfile.TemporaryDirectory(prefix="metapredict-tune-") as tmp:
        path = Path(tmp) / "cohort.parquet"
        frame = simulate_cohort(
            config.data.simulate_patients, config.data.simulate_seed, default_config()
        )
        frame.to_parquet(path, index=False)
        yield path
