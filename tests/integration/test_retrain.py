"""Retraining end to end: gate, evidence, failure safety, concurrency, refusal, comparison.

One store (module scope) lives through a history of four jobs, run through the CLI:

1. no champion yet: a weak model (few trees, 1,500 patients) becomes champion (exit 0);
2. a job that fails after registering its challenger, before promotion (exit 1);
3. a clearly better challenger (more trees, 5,000 patients, 2 % bad rows) is promoted (exit 0);
4. a weak challenger is kept (exit 3).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from metapredict import assessment, registry
from metapredict.cli import app
from metapredict.registry import promotion
from metapredict.retraining import bootstrap, job
from metapredict.retraining.config import RetrainConfig
from metapredict.retraining.job import Outcome, RetrainResult, run_retrain
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort
from metapredict.training_config import load_training_config
from tests.support import store_from_template

#: Few trees at a high rate: a real but weaker model (the champion guard refuses a constant
#: one); STRONG learns more from a larger cohort. Few resamples keep the suite quick.
WEAK = (
    "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\nn_estimators = 8\n"
    "learning_rate = 0.1\nnum_leaves = 2\ncalibration_folds = 2\n"
)
#: A fair model from a small cohort: passes the champion guard, loses the gate to STRONG.
MEDIUM = (
    "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\nn_estimators = 20\n"
    "learning_rate = 0.1\ncalibration_folds = 2\n"
)
STRONG = (
    "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
    "[model]\nn_estimators = 60\n"
    "learning_rate = 0.05\ncalibration_folds = 2\n"
)
BAD_ROWS_IN_BETTER_COHORT = 100


@dataclass(frozen=True)
class Step:
    exit_code: int
    output: str
    champion_after: str


@dataclass(frozen=True)
class History:
    settings: StoreSettings
    env: dict[str, str]
    steps: dict[str, Step]


def _cohort(path: Path, patients: int, seed: int, bad_rows: int = 0) -> Path:
    frame = simulate_cohort(patients, seed, default_config())
    if bad_rows:
        frame.loc[frame.index[:bad_rows], "age_years"] = 140.0
    frame.to_parquet(path, index=False)
    return path


def _client(settings: StoreSettings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _retrain_run(settings: StoreSettings, output: str) -> Any:
    run_id = output.split(" run ")[-1].split(";")[0].strip()
    return _client(settings).get_run(run_id)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, store_template: Path) -> History:
    root = tmp_path_factory.mktemp("retrain-history")
    settings = store_from_template(root / "store", store_template)
    env = {
        "METAPREDICT_TRACKING_URI": settings.tracking_uri,
        "METAPREDICT_ARTIFACT_ROOT": settings.artifact_root,
        "COLUMNS": "200",
    }
    weak, medium, strong = root / "weak.toml", root / "medium.toml", root / "strong.toml"
    weak.write_text(WEAK)
    medium.write_text(MEDIUM)
    strong.write_text(STRONG)
    plan = {
        "first": (_cohort(root / "c1.parquet", 1_500, 1), weak),
        "failed": (_cohort(root / "c2.parquet", 1_500, 2), weak),
        "better": (_cohort(root / "c3.parquet", 5_000, 3, BAD_ROWS_IN_BETTER_COHORT), strong),
        "worse": (_cohort(root / "c4.parquet", 1_500, 4), medium),
    }
    runner = CliRunner(env=env)
    steps: dict[str, Step] = {}
    for name, (data, config) in plan.items():
        argv = ["retrain", "tropism", "--data", str(data), "--training-config", str(config)]
        with pytest.MonkeyPatch.context() as patch:
            if name == "failed":

                def fail(*args: Any, **kwargs: Any) -> Any:
                    raise RuntimeError("injected failure before promotion")

                patch.setattr(bootstrap, "paired_bootstrap", fail)
            result = runner.invoke(app, argv)
        steps[name] = Step(
            result.exit_code,
            " ".join(result.output.split()),
            registry.current_version("tropism", "champion", settings),
        )
    return History(settings, env, steps)


@pytest.mark.slow
def test_without_a_champion_the_challenger_becomes_champion(history: History) -> None:
    step = history.steps["first"]
    assert step.exit_code == 0, step.output
    assert "no champion yet, challenger version 1 becomes champion" in step.output
    assert step.champion_after == "1"
    run = _retrain_run(history.settings, step.output)
    assert run.data.tags["retrain_decision"] == "promoted"
    assert run.data.tags["drift"] == "no champion to compare with"


@pytest.mark.slow
def test_a_job_failing_before_promotion_leaves_the_champion_untouched(history: History) -> None:
    step = history.steps["failed"]
    assert step.exit_code == 1, step.output
    assert "injected failure before promotion" in step.output
    assert "the champion is unchanged" in step.output
    assert step.champion_after == "1"
    client = _client(history.settings)
    orphan = client.get_model_version("metapredict-tropism", "2")  # registered, never judged
    assert "champion" not in orphan.aliases
    assert "retrain_decision" not in orphan.tags
    failed_runs = client.search_runs(
        [client.get_experiment_by_name("tropism").experiment_id],
        filter_string="attributes.run_name = 'tropism-retrain' and attributes.status = 'FAILED'",
    )
    assert len(failed_runs) == 1


@pytest.mark.slow
def test_a_clearly_better_challenger_is_promoted_with_its_evidence(history: History) -> None:
    step = history.steps["better"]
    assert step.exit_code == 0, step.output
    assert step.champion_after == "3"  # what a polling server sees via current_version
    assert f"{BAD_ROWS_IN_BETTER_COHORT} of 5000 rows rejected (2.0%)" in step.output
    assert "age_years: must be at most 100" in step.output
    run = _retrain_run(history.settings, step.output)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["retrain_decision"] == tags["retrain_outcome"] == "promoted"
    assert (tags["champion_version_before"], tags["champion_version_after"]) == ("1", "3")
    assert tags["retrain_reason"].startswith("promoted: macro_auroc +")
    assert metrics["n_rejected"] == BAD_ROWS_IN_BETTER_COHORT
    for who in ("champion", "challenger", "difference"):
        for name in ("macro_auroc", "macro_brier", "macro_calibration_error"):
            low, high = metrics[f"{who}_{name}_ci_low"], metrics[f"{who}_{name}_ci_high"]
            assert low <= high, (who, name)
    assert metrics["difference_macro_auroc_ci_low"] > 0
    assert metrics["challenger_macro_auroc"] >= metrics["champion_macro_auroc"] + 0.01
    client = _client(history.settings)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/drift.csv", "drift/drift.json", "drift/drift.png"} <= artifacts
    winner = client.get_model_version("metapredict-tropism", "3")
    assert winner.tags["retrain_decision"] == "promoted"
    assert winner.tags["retrain_run_id"] == run.info.run_id
    assert json.loads(winner.tags["retrain_metrics"])["challenger_macro_auroc"] > 0.5
    assert "challenger" not in winner.aliases  # a champion is no longer a challenger
    loser = client.get_model_version("metapredict-tropism", "1")
    assert (loser.tags["retrain_last_challenger"], loser.tags["retrain_last_decision"]) == (
        "3",
        "promoted",
    )
    training = client.get_run(winner.run_id)
    assert training.data.tags["retrain_run_id"] == run.info.run_id


@pytest.mark.slow
def test_a_worse_challenger_is_kept(history: History) -> None:
    step = history.steps["worse"]
    assert step.exit_code == 3, step.output
    assert "kept: improvement failed: macro_auroc -" in step.output
    assert step.champion_after == "3"
    client = _client(history.settings)
    kept = client.get_model_version("metapredict-tropism", "4")
    assert kept.tags["retrain_decision"] == "kept"
    assert kept.tags["retrain_compared_with"] == "3"
    assert "challenger" in kept.aliases
    drift = json.loads(
        Path(
            client.download_artifacts(
                _retrain_run(history.settings, step.output).info.run_id, "drift/drift.json"
            )
        ).read_text()
    )
    assert drift["flagged"] == []  # same simulator, new seed: nothing moved


@pytest.mark.slow
def test_compare_lists_versions_with_metrics_aliases_and_decisions(history: History) -> None:
    runner = CliRunner(env=history.env)
    result = runner.invoke(app, ["compare", "tropism", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["version"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["4", "3", "2", "1"]
    assert rows["3"]["aliases"] == ["champion"]
    assert rows["4"]["aliases"] == ["challenger"]
    assert rows["3"]["tags"]["retrain_outcome"] == "promoted"
    assert rows["4"]["tags"]["retrain_outcome"] == "kept"
    for row in rows.values():
        assert 0.5 < row["metrics"]["test_macro_auroc"] <= 1
        assert row["metrics"]["test_macro_auroc_ratio_to_oracle"] > 0
        assert row["run_name"] == "tropism-train"
    table = runner.invoke(app, ["compare", "tropism"])
    assert table.exit_code == 0, table.output
    assert "@champion" in table.output and "@challenger" in table.output
    line_3 = next(line for line in table.output.splitlines() if "@champion" in line)
    assert f"{rows['3']['metrics']['test_macro_auroc']:.3f}" in line_3
    assert "promoted" in line_3


# --- two jobs at once ------------------------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_retrains_promote_at_most_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_template: Path
) -> None:
    settings = store_from_template(tmp_path / "store", store_template)
    (tmp_path / "medium.toml").write_text(MEDIUM)
    config = load_training_config("tropism", tmp_path / "medium.toml")
    cohorts = [_cohort(tmp_path / f"c{i}.parquet", 1_500, 10 + i) for i in range(2)]
    # Both jobs evaluate against the same (absent) champion, then race for the alias.
    both_ready = threading.Barrier(2, timeout=300)
    original: Callable[..., promotion.PromotionResult] = promotion.promote_if_unchanged

    def racing(*args: Any, **kwargs: Any) -> promotion.PromotionResult:
        both_ready.wait()
        return original(*args, **kwargs)

    monkeypatch.setattr(job.promotion, "promote_if_unchanged", racing)
    # The race is the subject here, not the models: both challengers pass the champion guard
    # (a small cohort's model may not, and would never reach the barrier).
    monkeypatch.setattr(assessment, "degenerate_reason", lambda *args, **kwargs: None)
    results: list[RetrainResult] = []
    errors: list[BaseException] = []

    def work(data: Path) -> None:
        try:
            results.append(run_retrain(config, data, RetrainConfig(), settings=settings))
        except BaseException as err:
            errors.append(err)
            both_ready.abort()

    threads = [threading.Thread(target=work, args=(c,)) for c in cohorts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert sorted(r.outcome for r in results) == sorted(
        [Outcome.PROMOTED, Outcome.CHAMPION_CHANGED]
    )
    winner = next(r for r in results if r.outcome is Outcome.PROMOTED)
    loser = next(r for r in results if r.outcome is Outcome.CHAMPION_CHANGED)
    assert (winner.exit_code, loser.exit_code) == (0, 5)
    assert "champion changed during the job" in loser.reason
    assert registry.current_version("tropism", "champion", settings) == winner.challenger_version
    assert loser.champion_after == winner.challenger_version
    client = _client(settings)
    versions = client.search_model_versions("name = 'metapredict-tropism'")
    champions = [
        v for v in versions if "champion" in client.get_model_version(v.name, v.version).aliases
    ]
    assert len(versions) == 2 and len(champions) == 1
    assert (
        client.get_model_version("metapredict-tropism", loser.challenger_version).tags[
            "retrain_outcome"
        ]
        == "champion_changed"
    )


# --- refusal and bad input (no training) -------------------------------------------------------


@pytest.fixture(scope="module")
def refusal_store(
    tmp_path_factory: pytest.TempPathFactory, store_template: Path
) -> tuple[StoreSettings, CliRunner]:
    """One store for the refusal tests."""
    settings = store_from_template(tmp_path_factory.mktemp("refusals") / "store", store_template)
    env = {
        "METAPREDICT_TRACKING_URI": settings.tracking_uri,
        "METAPREDICT_ARTIFACT_ROOT": settings.artifact_root,
        "COLUMNS": "200",
    }
    return settings, CliRunner(env=env)


def test_a_cohort_with_too_many_bad_rows_is_refused(
    refusal_store: tuple[StoreSettings, CliRunner], tmp_path: Path
) -> None:
    settings, runner = refusal_store
    frame = simulate_cohort(400, 5, default_config())
    frame.loc[frame.index[:40], "age_years"] = 140.0  # 10 % > 5 %
    frame.loc[frame.index[40:45], "neutrophils"] = -0.2
    data = tmp_path / "bad.parquet"
    frame.to_parquet(data, index=False)
    result = runner.invoke(app, ["retrain", "tropism", "--data", str(data)])
    output = " ".join(result.output.split())
    assert result.exit_code == 4, output
    assert "45 of 400 rows rejected (11.2%)" in output
    assert "above the limit of 5.0%" in output
    client = _client(settings)
    assert client.search_registered_models() == []
    run = _retrain_run(settings, output)
    assert run.data.tags["retrain_decision"] == "refused"
    assert run.data.metrics["rejected_share"] == pytest.approx(45 / 400)
    assert run.info.status == "FINISHED"


def test_a_cohort_missing_a_column_is_refused_as_unusable(
    refusal_store: tuple[StoreSettings, CliRunner], tmp_path: Path
) -> None:
    frame = simulate_cohort(200, 5, default_config()).drop(columns=["neutrophils"])
    data = tmp_path / "no-neutrophils.csv"
    frame.to_csv(data, index=False)
    result = refusal_store[1].invoke(app, ["retrain", "dormancy", "--data", str(data)])
    output = " ".join(result.output.split())
    assert result.exit_code == 4, output
    assert "refused: the cohort is unusable" in output and "neutrophils" in output


def test_a_bad_retrain_config_exits_2(
    refusal_store: tuple[StoreSettings, CliRunner], tmp_path: Path
) -> None:
    data = tmp_path / "c.parquet"
    simulate_cohort(100, 5, default_config()).to_parquet(data, index=False)
    config = tmp_path / "retrain.toml"
    config.write_text("[validation]\nmax_rejected_share = 2.0\n")
    result = refusal_store[1].invoke(
        app, ["retrain", "tropism", "--data", str(data), "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "max_rejected_share" in result.output


def test_rows_failing_validation_are_dropped_and_counted() -> None:
    frame = simulate_cohort(300, 6, default_config())
    frame.loc[frame.index[[3, 7]], "age_years"] = 140.0
    frame.loc[frame.index[7], "cancer_type"] = "Glioma"  # not a normalised label
    frame.loc[frame.index[11], "stage"] = "V"
    clean, report = job.validate_rows(frame, job.cohort_model(frame))
    assert clean is not None and len(clean) == 297
    assert (report.n_rows, report.n_rejected) == (300, 3)
    assert report.share == pytest.approx(0.01)
    assert report.reasons["age_years: must be at most 100 years"] == 2
    assert not np.isin(frame.loc[frame.index[[3, 7, 11]], "patient_id"], clean["patient_id"]).any()
    assert isinstance(clean, pd.DataFrame)
