"""Helpers shared by tests (importable as ``tests.support``; fixtures live in conftest.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from metapredict.settings import StoreSettings
from metapredict.training_config import (
    DormancyConfig,
    TrainingConfig,
    TropismConfig,
    load_training_config,
)

#: A training config small enough for tests (seconds), large enough to learn planted effects.
TINY_TRAINING: dict[str, Any] = {
    "data": {"simulate_patients": 6000, "simulate_seed": 3, "test_size": 0.2},
    "cv": {"folds": 2, "bootstrap_resamples": 20},
    "intervals": {"members": 3},
    "model": {"n_estimators": 150},
}


def tiny_training_config(task: str, **model: Any) -> TrainingConfig:
    """The packaged config for ``task`` with the tiny data/CV/model settings above."""
    base = load_training_config(task).model_dump()  # type: ignore[arg-type]
    for section, values in TINY_TRAINING.items():
        base[section] = {**base[section], **values}
    base["model"] |= model
    cls: type[TropismConfig] | type[DormancyConfig] = (
        TropismConfig if task == "tropism" else DormancyConfig
    )
    return cls.model_validate(base)


def store_settings(directory: Path) -> StoreSettings:
    return StoreSettings(
        tracking_uri=f"sqlite:///{directory / 'mlflow.db'}",
        artifact_root=str(directory / "artifacts"),
    )


def store_from_template(directory: Path, template: Path) -> StoreSettings:
    """:func:`store_settings` of ``directory``, whose database starts as a copy of
    ``template``: an empty store the project's own code created (the ``store_template``
    fixture). Creating a store runs MLflow's schema migrations, about 5 s each; tests of store
    creation itself (first trainings racing on an empty store) use :func:`store_settings`."""
    settings = store_settings(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, directory / "mlflow.db")
    return settings


@dataclass(frozen=True)
class TrainedStore:
    settings: StoreSettings
    outcomes: dict[str, Any]


def types_of(frame: pd.DataFrame) -> tuple[str, ...]:
    """The cancer types present in ``frame``, sorted: the codes a model trained on it uses."""
    return tuple(sorted(frame["cancer_type"].dropna().unique()))
