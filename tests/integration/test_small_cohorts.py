"""Small cohorts with the default config: size-aware models, the champion guard, honest numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from metapredict import registry, schema
from metapredict.cli import app
from metapredict.settings import StoreSettings
from metapredict.simulator import default_config, simulate_cohort

pytestmark = pytest.mark.slow

#: Keeps the suite quick: fewer resamples, the default config otherwise ("auto" sizing, 5 x 5).
FAST_INTERVALS = "[cv]\nbootstrap_resamples = 40\n[intervals]\nmembers = 2\n"


def one_line(text: str) -> str:
    return " ".join(text.split())


def _train(task: str, data: Path, tmp_path: Path) -> Any:
    config = tmp_path / f"{task}.toml"
    config.write_text(FAST_INTERVALS)
    return CliRunner().invoke(app, ["train", task, "--data", str(data), "--config", str(config)])


def test_a_150_patient_cohort_trains_a_non_constant_dormancy_model_with_the_default_config(
    tmp_store: StoreSettings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(150, 41, default_config())
    data = tmp_path / "small.parquet"
    cohort.drop(columns=list(schema.oracle_columns())).to_parquet(data, index=False)
    result = _train("dormancy", data, tmp_path)
    assert result.exit_code in (0, 3), result.output
    text = one_line(result.output)
    assert "5 x 5-fold CV" in text  # repeated CV below 2,000 patients
    assert "size rule" in text and "min_child_samples=5" in text
    assert "±" in text and "[" in text  # CV spread and test intervals
    assert "the test split has only" in text  # a few events: a warning
    client = MlflowClient(tracking_uri=tmp_store.tracking_uri)
    [version] = client.search_model_versions("name='metapredict-dormancy'")
    run = client.get_run(version.run_id)
    assert run.data.params["sizing.min_child_samples"] == "5"
    assert "test_harrell_c_ci95_low" in run.data.metrics
    client.set_registered_model_alias("metapredict-dormancy", "inspect", version.version)
    predictor = registry.load("dormancy", "inspect", tmp_store)
    features = cohort[list(schema.feature_columns())]
    risks = predictor.predict(features[features["stage"].astype(object) != "IV"])
    assert risks["risk_60"].std() > 1e-3  # not one risk for everyone


def test_shuffled_labels_are_refused_as_champion_with_exit_code_3(
    tmp_store: StoreSettings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(1200, 42, default_config())
    cohort = cohort.drop(columns=list(schema.oracle_columns()))
    months, event = schema.survival_columns()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(cohort))
    cohort[[months, event]] = cohort[[months, event]].to_numpy()[order]
    cohort = cohort.drop(columns=list(schema.site_columns()))
    data = tmp_path / "shuffled.parquet"
    cohort.to_parquet(data, index=False)
    result = _train("dormancy", data, tmp_path)
    assert result.exit_code == 3, result.output
    text = one_line(result.output)
    assert "not champion:" in text and "cannot be told from chance" in text
    client = MlflowClient(tracking_uri=tmp_store.tracking_uri)
    [version] = client.search_model_versions("name='metapredict-dormancy'")
    assert version.aliases == []  # registered for inspection, never champion
    assert "cannot be told from chance" in version.tags["not_champion"]
    with pytest.raises(registry.ModelNotFoundError):
        registry.current_version("dormancy", registry.CHAMPION, tmp_store)
    runs = client.search_runs([client.get_experiment_by_name("dormancy").experiment_id])
    assert len(runs) >= 3  # the parent and one child per family stay for inspection
