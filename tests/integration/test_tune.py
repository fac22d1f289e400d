"""``metapredict tune``: workers sharing one study (SQLite storage), a killed worker's trial
retried, nested MLflow runs, and a written config that trains to the study's best CV metric."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import sqlalchemy.exc

import metapredict
from metapredict.evaluation import cross_validate, prepare
from metapredict.pipeline import LIGHTGBM, load_cohort, resolve_model, resolve_repeats
from metapredict.simulator import default_config, simulate_cohort
from metapredict.training_config import load_training_config
from metapredict.tuning import make_estimator, open_storage
from tests.servers import wait_until
from tests.support import store_from_template, store_settings

pytestmark = pytest.mark.slow

#: Tiny trials (a second or two each): 1,500 patients, 2 folds, at most 30 trees.
TINY_CONFIG = """
task = "tropism"
seed = 7
[cv]
folds = 2
repeats = 1
bootstrap_resamples = 20
[intervals]
members = 0
"""
TINY_SPACE = """
[n_estimators]
low = 10
high = 30
[num_leaves]
high = 7
"""
#: Generous bounds for a loaded 2-core machine; the workers end long before.
WORKER_TIMEOUT_S = 600


@pytest.fixture
def setup(tmp_path: Path, store_template: Path) -> dict[str, Path]:
    store_from_template(tmp_path / "store", store_template)  # the workers' MLflow store
    (tmp_path / "config.toml").write_text(TINY_CONFIG)
    (tmp_path / "space.toml").write_text(TINY_SPACE)
    simulate_cohort(1500, seed=4, config=default_config()).to_parquet(tmp_path / "cohort.parquet")
    return {
        "dir": tmp_path,
        "config": tmp_path / "config.toml",
        "space": tmp_path / "space.toml",
        "data": tmp_path / "cohort.parquet",
        "storage": tmp_path / "optuna.db",
    }


def _env(tmp_path: Path) -> dict[str, str]:
    """The worker's environment: this checkout's code first, the test's own MLflow store."""
    settings = store_settings(tmp_path / "store")
    src = Path(metapredict.__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(src.parent)])
    env["METAPREDICT_TRACKING_URI"] = settings.tracking_uri
    env["METAPREDICT_ARTIFACT_ROOT"] = settings.artifact_root
    return env


def start_worker(setup: dict[str, Path], trials: int, *extra: str) -> subprocess.Popen[str]:
    code = "import sys; sys.argv[0] = 'metapredict'; from metapredict.cli import app; app()"
    args = [
        sys.executable, "-c", code, "tune", "tropism",
        "--trials", str(trials), "--study", "s",
        "--storage", f"sqlite:///{setup['storage']}",
        "--data", str(setup["data"]), "--config", str(setup["config"]),
        "--space", str(setup["space"]), "--best-config", str(setup["dir"] / "best.toml"),
        "--no-register", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        args,
        env=_env(setup["dir"]),
        cwd=setup["dir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(worker: subprocess.Popen[str]) -> dict[str, object]:
    try:
        out, err = worker.communicate(timeout=WORKER_TIMEOUT_S)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, err[-3000:]
    assert sys.modules["metapredict"].__file__ is not None
    return dict(json.loads(out.strip().splitlines()[-1]))


def load(setup: dict[str, Path]) -> optuna.Study:
    """The study, opened as the workers open it: under the storage's creation lock, since
    opening a storage whose tables a worker is still creating would create them too and race it
    ("UNIQUE constraint failed: alembic_version.version_num")."""
    return optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{setup['storage']}"))


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_two_workers_share_one_study(setup: dict[str, Path]) -> None:
    trials = 4
    workers = [start_worker(setup, trials) for _ in range(2)]
    results = [finish(w) for w in workers]

    study = load(setup)
    done = complete(study)
    # A worker checks the count before it starts a trial, so two workers starting their last
    # trials in the same instant may add one more.
    assert trials <= len(done) <= trials + 1
    assert sum(int(r["trials_run_here"]) for r in results) >= len(done)  # type: ignore[call-overload]
    assert [r["final_step"] for r in results].count(True) == 1
    # The worker code ran from this checkout (PYTHONPATH), in this test's store.
    assert {r["parent_run_id"] for r in results} == {study.user_attrs["mlflow_parent_run_id"]}

    # MLflow: one parent run for the study, a nested run per trial with train's metric names.
    settings = store_settings(setup["dir"] / "store")
    client = mlflow.MlflowClient(settings.tracking_uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = client.search_runs(
        [client.get_experiment_by_name("tropism").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert len(children) == len(study.trials)
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == len(done)
    assert {"cv_macro_auroc", "cv_macro_auroc_std", "cv_macro_brier"} <= set(
        finished[0].data.metrics
    )
    assert client.get_run(parent).data.metrics["best_cv_macro_auroc"] == study.best_value

    # The written config is a training config whose CV (train's own code) gives the best value.
    best = load_training_config("tropism", setup["dir"] / "best.toml")
    assert best.model.n_estimators == study.best_params["n_estimators"]
    cohort = load_cohort(setup["data"], best)
    data = prepare("tropism", cohort.frame, test_size=best.data.test_size, seed=best.seed)
    args, _ = resolve_model(best, data)
    result = cross_validate(
        LIGHTGBM,
        lambda: make_estimator(best, args),
        data,
        folds=best.cv.folds,
        seed=best.seed,
        repeats=resolve_repeats(best, data),
    )
    assert result.cv["macro_auroc"] == pytest.approx(study.best_value, abs=1e-12)


def test_a_killed_workers_trial_is_retried(setup: dict[str, Path]) -> None:
    trials = 3
    # Trials long enough (hundreds of trees) to be caught between their two folds.
    setup["space"].write_text("[n_estimators]\nlow = 300\nhigh = 400\n")
    fast = ("--heartbeat", "1", "--grace", "2")
    victim = start_worker(setup, trials, *fast)
    running: list[optuna.trial.FrozenTrial] = []

    def started() -> bool:
        if setup["storage"].exists():
            # KeyError: the worker has not created the study yet; OperationalError: the
            # database stayed locked by a writer
            with contextlib.suppress(
                KeyError, optuna.exceptions.OptunaError, sqlalchemy.exc.OperationalError
            ):
                running[:] = load(setup).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        return bool(running)

    try:
        wait_until(started, WORKER_TIMEOUT_S, "the worker to start a trial", process=victim)
        os.kill(victim.pid, signal.SIGKILL)  # mid-trial, no chance to clean up
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
    killed = running[0].number

    result = finish(start_worker(setup, trials, *fast))

    study = load(setup)
    assert len(complete(study)) == trials
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    retries = [t for t in complete(study) if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    # The retry keeps what the dead trial had sampled (nothing, if it died before sampling).
    assert study.trials[killed].params.items() <= retries[0].params.items()
    assert result["final_step"] is True


def test_a_worker_opens_a_new_storage_while_another_program_creates_its_tables(
    tmp_path: Path,
) -> None:
    """A program outside the workers' lock (optuna-dashboard, a notebook's ``load_study``) that
    opens a new storage creates Optuna's tables too. Racing it, a worker's first open failed with
    "table studies already exists" about three times in four; it now opens again. One worker
    process opens eight new storages in turn while this test opens the newest, as optuna does."""
    files = [tmp_path / f"optuna-{n}.db" for n in range(8)]
    code = (
        "import sys, optuna; from metapredict.tuning import open_storage\n"
        "for path in sys.argv[1:]:\n"
        "    optuna.create_study(study_name='s', storage=open_storage('sqlite:///' + path))\n"
        "print('{\"opened\": %d}' % (len(sys.argv) - 1))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, files)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    # Until the worker ends (it writes a few lines, far below a pipe's buffer); finish() then
    # reads its pipes, and kills it if it has not ended.
    while worker.poll() is None and time.monotonic() < deadline:
        newest = [f for f in files if f.exists()][-1:]
        for path in newest:
            with contextlib.suppress(Exception):
                optuna.load_study(study_name="s", storage=f"sqlite:///{path}")
    assert finish(worker) == {"opened": len(files)}
    for path in files:
        assert optuna.load_study(study_name="s", storage=f"sqlite:///{path}").study_name == "s"
