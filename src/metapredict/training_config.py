"""Training configuration: TOML files (``training/configs/*.toml``) parsed into pydantic models."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metapredict.sizing import AUTO, Auto
from metapredict.tasks import HORIZONS
from metapredict.tasks import TASKS as TASKS
from metapredict.tasks import Task as Task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    simulate_patients: Annotated[int, Field(gt=100)] = 20_000
    simulate_seed: int = 7
    test_size: Annotated[float, Field(gt=0.05, lt=0.5)] = 0.2


class CVConfig(_Strict):
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    #: "auto": 5 repeats below 2,000 patients, else 1 (metapredict.sizing).
    repeats: Annotated[int, Field(ge=1, le=20)] | Auto = AUTO
    #: Bootstrap resamples of the test split behind each test metric's 95 % interval.
    bootstrap_resamples: Annotated[int, Field(ge=20, le=5000)] = 200


#: The hyperparameters the size rule may set (metapredict.sizing); "auto" lets it.
SIZED = ("n_estimators", "num_leaves", "min_child_samples")


class LightGBMConfig(_Strict):
    n_estimators: Annotated[int, Field(ge=1, le=10_000)] | Auto = AUTO
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.02
    num_leaves: Annotated[int, Field(ge=2, le=1024)] | Auto = 3
    min_child_samples: Annotated[int, Field(ge=1)] | Auto = AUTO
    subsample: Annotated[float, Field(gt=0, le=1)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0, le=1)] = 0.8
    reg_lambda: Annotated[float, Field(ge=0)] = 5.0
    n_jobs: Annotated[int, Field(ge=1)] = 2


class TropismModelConfig(LightGBMConfig):
    balance: bool = True
    calibration: Literal["auto", "sigmoid", "none"] = "auto"
    calibration_folds: Annotated[int, Field(ge=2, le=10)] = 3


class DormancyModelConfig(LightGBMConfig):
    interval_months: Annotated[float, Field(gt=0)] = 6.0
    max_months: Annotated[float, Field(gt=0)] = 180.0
    #: Platt scaling of the hazard's log-odds on out-of-fold person-period rows (DiscreteTimeHazard)
    calibration: Literal["auto", "sigmoid", "none"] = "auto"
    calibration_folds: Annotated[int, Field(ge=2, le=10)] = 2

    @model_validator(mode="after")
    def _intervals_fit_the_horizons(self) -> DormancyModelConfig:
        # The same rule DiscreteTimeHazard.fit enforces, checked before any data is loaded.
        for h in HORIZONS:
            steps = h / self.interval_months
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(f"interval_months must divide the horizon {h} months")
            if h > self.max_months:
                raise ValueError(f"max_months must reach the horizon {h} months")
        return self


class IntervalConfig(_Strict):
    """How prediction intervals are fitted (defaults documented in docs/intervals.md)."""

    #: Bootstrap members refitted after the main model; 0 fits none (no intervals).
    members: Annotated[int, Field(ge=0, le=200)] = 10
    #: Nominal coverage of each interval.
    level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.9
    #: Added to the training seed: the resamples' and the members' seeds.
    seed_offset: int = 1000
    #: Serve the members' spread from a small model of it (one booster call per output)
    #: instead of predicting every member (milliseconds per patient); see BootstrapEnsemble.
    spread_model: bool = True
    #: Members boost twice the point model's rounds (twicing) and the interval is centred on
    #: their mean: a bias-corrected interval (docs/intervals.md). False: members repeat the
    #: point model and the interval is centred on it (the estimation uncertainty alone).
    bias_correction: bool = True


class LogisticConfig(_Strict):
    C: Annotated[float, Field(gt=0)] = 1.0


class CoxConfig(_Strict):
    alpha: Annotated[float, Field(ge=0)] = 1.0


class TropismConfig(_Strict):
    task: Literal["tropism"] = "tropism"
    seed: int = 7
    data: DataConfig = DataConfig()
    cv: CVConfig = CVConfig()
    model: TropismModelConfig = TropismModelConfig()
    baseline: LogisticConfig = LogisticConfig()
    intervals: IntervalConfig = IntervalConfig()


class DormancyConfig(_Strict):
    task: Literal["dormancy"] = "dormancy"
    seed: int = 7
    data: DataConfig = DataConfig()
    cv: CVConfig = CVConfig()
    model: DormancyModelConfig = DormancyModelConfig(
        learning_rate=0.05, num_leaves=AUTO, reg_lambda=10.0
    )
    baseline: CoxConfig = CoxConfig()
    intervals: IntervalConfig = IntervalConfig()


TrainingConfig = TropismConfig | DormancyConfig


def default_config_path(task: Task) -> Path:
    """The packaged ``training/configs/<task>.toml``."""
    return Path(str(resources.files("training") / "configs" / f"{task}.toml"))


def load_training_config(task: Task, path: Path | None = None) -> TrainingConfig:
    """Parse ``path`` (default: the packaged config) for ``task``; unknown keys are errors."""
    path = path or default_config_path(task)
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    raw.setdefault("task", task)
    if raw["task"] != task:
        raise ValueError(f"{path} configures task '{raw['task']}', not '{task}'")
    model: type[TropismConfig] | type[DormancyConfig] = (
        TropismConfig if task == "tropism" else DormancyConfig
    )
    return model.model_validate(raw)
