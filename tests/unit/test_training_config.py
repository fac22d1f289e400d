"""Training configs: packaged TOML files parse; anything unknown or inconsistent is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from metapredict.training_config import (
    TASKS,
    DormancyConfig,
    TropismConfig,
    default_config_path,
    load_training_config,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("task", TASKS)
def test_packaged_configs_load(task: str) -> None:
    path = default_config_path(task)
    assert path.is_file()
    assert path.name == f"{task}.toml"
    config = load_training_config(task)
    assert config.task == task
    assert isinstance(config, TropismConfig if task == "tropism" else DormancyConfig)


def test_packaged_configs_carry_the_documented_settings() -> None:
    tropism = load_training_config("tropism")
    dormancy = load_training_config("dormancy")
    assert isinstance(tropism, TropismConfig) and isinstance(dormancy, DormancyConfig)
    assert tropism.model.calibration == "auto"
    assert tropism.model.balance is True
    assert dormancy.model.interval_months == 6.0
    assert dormancy.model.max_months == 180.0
    assert dormancy.model.min_child_samples == "auto"  # sized to the cohort (metapredict.sizing)
    assert dormancy.model.num_leaves == "auto" and tropism.model.num_leaves == 3
    assert dormancy.baseline.alpha == 1.0


def test_a_partial_file_falls_back_to_the_defaults(tmp_path: Path) -> None:
    config = load_training_config("tropism", _write(tmp_path, "[model]\nn_estimators = 12\n"))
    assert config.task == "tropism"
    assert config.model.n_estimators == 12
    assert config.model.learning_rate == TropismConfig().model.learning_rate
    assert config.cv.folds == 5


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("[model]\nnum_trees = 10\n", "num_trees"),
        ("seeds = 3\n", "seeds"),
        ("[evaluation]\nfolds = 3\n", "evaluation"),
        ("[data]\nsimulate_patient = 300\n", "simulate_patient"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path: Path, text: str, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_training_config("tropism", _write(tmp_path, text))


def test_a_key_of_the_other_task_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "[model]\ninterval_months = 6.0\n")
    with pytest.raises(ValueError, match="interval_months"):
        load_training_config("tropism", path)
    assert load_training_config("dormancy", path).model.interval_months == 6.0


def test_a_file_for_the_other_task_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, 'task = "dormancy"\n')
    with pytest.raises(ValueError, match="configures task 'dormancy', not 'tropism'"):
        load_training_config("tropism", path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval_months = 0\n", "greater than 0"),
        ("interval_months = 7.0\n", "must divide the horizon 36"),
        ("interval_months = 24.0\n", "must divide the horizon 36"),
        ("max_months = 100.0\n", "max_months must reach the horizon 120"),
    ],
)
def test_dormancy_intervals_must_fit_the_horizons(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_training_config("dormancy", _write(tmp_path, f"[model]\n{text}"))


@pytest.mark.parametrize("interval", [3.0, 6.0, 12.0])
def test_intervals_dividing_36_60_and_120_are_accepted(tmp_path: Path, interval: float) -> None:
    path = _write(tmp_path, f"[model]\ninterval_months = {interval}\n")
    assert load_training_config("dormancy", path).model.interval_months == interval


@pytest.mark.parametrize(
    "text",
    [
        "[cv]\nfolds = 1\n",
        "[data]\ntest_size = 0.6\n",
        "[data]\nsimulate_patients = 50\n",
        '[model]\ncalibration = "isotonic"\n',
        "[model]\nlearning_rate = 0\n",
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        load_training_config("tropism", _write(tmp_path, text))


def test_configs_are_frozen() -> None:
    config = load_training_config("tropism")
    with pytest.raises(ValueError):
        config.model.n_estimators = 3
