"""A tiny training run per task, end to end through MLflow: logged, registered, reloadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from metapredict import registry, schema
from metapredict.cli import app
from metapredict.pipeline import input_example, run_training
from metapredict.simulator import default_config, simulate_cohort
from tests.support import TrainedStore, tiny_training_config

pytestmark = pytest.mark.slow

EXPECTED_METRICS = {
    "tropism": [
        "cv_macro_auroc",
        "cv_macro_auroc_std",
        "test_macro_auroc",
        "test_macro_auprc",
        "test_macro_brier",
        "test_macro_calibration_error",
        *(f"test_auroc_{s}" for s in schema.sites()),
        *(f"test_auprc_{s}" for s in schema.sites()),
        *(f"test_brier_{s}" for s in schema.sites()),
        *(f"test_calibration_error_{s}" for s in schema.sites()),
        "test_macro_auroc_breast",
        "test_macro_auroc_ratio_to_oracle",
    ],
    "dormancy": [
        "cv_harrell_c",
        "test_harrell_c",
        "test_uno_c",
        "test_td_auc_36",
        "test_td_auc_60",
        "test_td_auc_120",
        "test_integrated_brier",
        "test_harrell_c_breast",
        "test_harrell_c_ratio_to_oracle",
    ],
}
EXPECTED_ARTIFACTS = {
    "tropism": [
        "plots/roc_per_site.png",
        "plots/calibration_per_site.png",
        "plots/shap_summary.png",
        "feature_importance.json",
        "config.json",
    ],
    "dormancy": [
        "plots/kaplan_meier_by_risk_group.png",
        "plots/shap_summary.png",
        "feature_importance.json",
        "config.json",
    ],
}
TASKS = ("tropism", "dormancy")


def _client(store: TrainedStore) -> MlflowClient:
    """A client on ``store``; also points mlflow's globals (``models:/`` URIs) at it."""
    uri = store.settings.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.mark.parametrize("task", TASKS)
def test_first_model_is_registered_as_champion(trained_store: TrainedStore, task: str) -> None:
    registered = trained_store.outcomes[task].registered
    client = _client(trained_store)
    version = client.get_model_version_by_alias(f"metapredict-{task}", "champion")
    assert registered.alias == "champion"
    assert str(version.version) == registered.version
    assert version.run_id == registered.run_id
    assert version.tags["schema_version"] == schema.SCHEMA_VERSION


@pytest.mark.parametrize("task", TASKS)
def test_job_logs_metrics_params_tags_dataset_and_plots(
    trained_store: TrainedStore, task: str
) -> None:
    client = _client(trained_store)
    run = client.get_run(trained_store.outcomes[task].registered.run_id)
    missing = [m for m in EXPECTED_METRICS[task] if m not in run.data.metrics]
    assert not missing, f"metrics not logged: {missing}"
    for tag in (
        "git_commit",
        "data_digest",
        "schema_version",
        "simulator_version",
        "simulator_seed",
    ):
        assert run.data.tags.get(tag), tag
    assert run.data.tags["simulator_seed"] == "3"
    assert run.data.params["cv.folds"] == "2"
    assert run.inputs.dataset_inputs, "the training dataset was not logged"
    artifacts = _artifacts(client, run.info.run_id)
    assert set(EXPECTED_ARTIFACTS[task]) <= artifacts


@pytest.mark.parametrize("task", TASKS)
def test_model_families_are_child_runs_with_identical_metric_names(
    trained_store: TrainedStore, task: str
) -> None:
    client = _client(trained_store)
    parent = client.get_run(trained_store.outcomes[task].registered.run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_family = {c.data.tags["model_family"]: set(c.data.metrics) for c in children}
    baseline = "logistic_regression" if task == "tropism" else "cox_ph"
    assert set(by_family) == {"lightgbm", baseline, "oracle"}
    # the registered model's test metrics also carry their bootstrap intervals
    intervals = {m for m in by_family["lightgbm"] if m.endswith(("_ci95_low", "_ci95_high"))}
    assert "test_macro_auroc_ci95_low" in intervals or "test_harrell_c_ci95_low" in intervals
    assert by_family["lightgbm"] - intervals == by_family[baseline]
    main = "test_macro_auroc" if task == "tropism" else "test_harrell_c"
    assert main in by_family["oracle"]


@pytest.mark.parametrize("task", TASKS)
def test_reloading_the_champion_reproduces_predictions_exactly(
    trained_store: TrainedStore, task: str
) -> None:
    predictor = registry.load(task, "champion", trained_store.settings)
    cohort = simulate_cohort(300, 99, default_config())
    frame = cohort[list(schema.feature_columns())]
    estimator = trained_store.outcomes[task].results["lightgbm"].estimator
    from metapredict.features import encode_frame

    X = encode_frame(frame, predictor.cancer_types)
    expected = estimator.predict_proba(X) if task == "tropism" else estimator.predict_outputs(X)
    np.testing.assert_array_equal(predictor.predict(frame).to_numpy(), expected)
    assert predictor.info.version == trained_store.outcomes[task].registered.version
    assert predictor.info.alias == "champion"
    assert predictor.schema_version == schema.SCHEMA_VERSION


@pytest.mark.parametrize("task", TASKS)
def test_mlflow_pyfunc_returns_the_same_probabilities(
    trained_store: TrainedStore, task: str
) -> None:
    _client(trained_store)
    model = mlflow.pyfunc.load_model(f"models:/metapredict-{task}@champion")
    predictor = registry.load(task, "champion", trained_store.settings)
    frame = input_example(predictor, rows=2)
    native = predictor.predict_batch(frame)  # the outputs, then their intervals
    via_pyfunc = model.predict(frame)
    assert list(via_pyfunc.columns) == list(native.columns) == list(predictor.batch_columns)
    assert len(native.columns) == 3 * len(predictor.output_names)
    np.testing.assert_allclose(via_pyfunc.to_numpy(), native.to_numpy(), rtol=0, atol=1e-12)
    assert ((via_pyfunc.to_numpy() >= 0) & (via_pyfunc.to_numpy() <= 1)).all()


def test_second_training_registers_a_challenger(tmp_store: Any) -> None:
    config = tiny_training_config("tropism", n_estimators=20, learning_rate=0.1)
    first = run_training(config, settings=tmp_store)
    second = run_training(config, settings=tmp_store)
    assert (first.registered.alias, second.registered.alias) == ("champion", "challenger")
    assert registry.current_version("tropism", "champion", tmp_store) == first.registered.version


def _write_cohort(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path, index=False)
    return path


def test_bad_cohort_is_refused_with_every_violation_and_nothing_registered(
    tmp_store: Any, tmp_path: Path
) -> None:
    cohort = simulate_cohort(400, 5, default_config())
    cohort.loc[3, "age_years"] = 140.0
    cohort.loc[7, "cancer_type"] = "Glioma (WHO grade IV)"  # not a label
    data = _write_cohort(tmp_path / "bad.parquet", cohort)
    result = CliRunner().invoke(app, ["train", "tropism", "--data", str(data)])
    assert result.exit_code == 1
    assert "age_years" in result.output and "must be at most 100" in result.output
    assert "cancer_type" in result.output and "lowercase snake-case label" in result.output
    assert "nothing was trained or registered" in result.output
    client = MlflowClient(tracking_uri=tmp_store.tracking_uri, registry_uri=tmp_store.tracking_uri)
    assert client.search_registered_models() == []


def test_train_cli_trains_on_a_user_cohort_file(tmp_store: Any, tmp_path: Path) -> None:
    cohort = simulate_cohort(3000, 8, default_config())
    real_like = cohort.drop(columns=list(schema.oracle_columns()))
    data = _write_cohort(tmp_path / "cohort.parquet", real_like)
    config = tmp_path / "tropism.toml"
    config.write_text(
        "[cv]\nfolds = 2\nbootstrap_resamples = 20\n[intervals]\nmembers = 2\n"
        "[model]\nn_estimators = 30\n"
        "learning_rate = 0.1\ncalibration_folds = 2\n"
    )
    result = CliRunner().invoke(
        app, ["train", "tropism", "--data", str(data), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert "registered metapredict-tropism version 1 as @champion" in " ".join(
        result.output.split()
    )
    predictor = registry.load("tropism", "champion", tmp_store)
    assert predictor.model.params["n_estimators"] == 30
    client = MlflowClient(tracking_uri=tmp_store.tracking_uri)
    run = client.get_run(predictor.info.run_id)
    assert run.data.tags["data_source"] == str(data.resolve())
    assert "test_macro_auroc_ratio_to_oracle" not in run.data.metrics  # no oracle in real data


def test_unknown_config_key_is_refused(tmp_store: Any, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nnum_trees = 10\n")
    result = CliRunner().invoke(app, ["train", "tropism", "--config", str(config)])
    assert result.exit_code == 2
    assert "num_trees" in result.output


def test_a_stale_no_champion_read_cannot_make_a_second_champion(
    tmp_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first trainings at once: the loser's check saw no champion, the lock sees one."""
    from metapredict.registry import promotion

    config = tiny_training_config("tropism", n_estimators=10, learning_rate=0.2)
    first = run_training(config, settings=tmp_store)
    monkeypatch.setattr(promotion, "champion_version", lambda task, settings=None: None)
    second = run_training(config, settings=tmp_store)
    assert first.registered.alias == "champion"
    assert second.registered.alias == "challenger"
    assert registry.current_version("tropism", "champion", tmp_store) == first.registered.version
    assert registry.current_version("tropism", "challenger", tmp_store) == second.registered.version
