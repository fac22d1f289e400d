"""Retraining configuration (``training/configs/retrain.toml``) parsed into pydantic models."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metapredict.retraining.bootstrap import GATE_METRICS
from metapredict.training_config import Task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidationConfig(_Strict):
    """Rows failing the schema are dropped and counted; above this share the job refuses."""

    max_rejected_share: Annotated[float, Field(ge=0, lt=1)] = 0.05


class BootstrapConfig(_Strict):
    """Paired bootstrap of the held-out split (same resamples for champion and challenger)."""

    resamples: Annotated[int, Field(ge=20, le=2000)] = 200
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    seed: int = 11


class GateConfig(_Strict):
    """When a challenger replaces the champion.

    Promote only if the challenger's ``metric`` (higher is better) beats the champion's by at
    least ``min_improvement`` (point estimate), the lower bound of the bootstrap interval of the
    paired difference is above zero when ``require_ci_above_zero``, and no calibration metric
    (lower is better) is worse than the champion's by more than its tolerance.
    """

    metric: str
    min_improvement: Annotated[float, Field(ge=0)] = 0.01
    require_ci_above_zero: bool = True
    calibration: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)


class DriftConfig(_Strict):
    """When a feature counts as moved: PSI above ``psi_threshold``, or a significant test with
    an effect large enough to matter (so that large cohorts don't flag noise)."""

    psi_threshold: Annotated[float, Field(gt=0)] = 0.2
    ks_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    ks_min_statistic: Annotated[float, Field(gt=0, le=1)] = 0.1
    chi2_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    categorical_min_distance: Annotated[float, Field(gt=0, le=1)] = 0.1


def _default_gates() -> dict[Task, GateConfig]:
    return {
        "tropism": GateConfig(
            metric="macro_auroc",
            calibration={"macro_calibration_error": 0.01, "macro_brier": 0.002},
        ),
        "dormancy": GateConfig(metric="harrell_c", calibration={"integrated_brier": 0.005}),
    }


class RetrainConfig(_Strict):
    validation: ValidationConfig = ValidationConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    drift: DriftConfig = DriftConfig()
    gate: dict[Task, GateConfig] = Field(default_factory=_default_gates)

    @model_validator(mode="before")
    @classmethod
    def _default_gate_per_task(cls, data: Any) -> Any:
        # A file may configure one task's gate; the other keeps its default.
        if isinstance(data, dict) and isinstance(data.get("gate"), dict):
            data = {**data, "gate": {**_default_gates(), **data["gate"]}}
        return data

    @model_validator(mode="after")
    def _gate_metrics_exist(self) -> RetrainConfig:
        for task, gate in self.gate.items():
            known = GATE_METRICS[task]
            higher = sorted(k for k, up in known.items() if up)
            lower = sorted(k for k, up in known.items() if not up)
            if not known.get(gate.metric, False):
                raise ValueError(
                    f"gate.{task}.metric '{gate.metric}' must be one of: {', '.join(higher)}"
                )
            wrong = sorted(k for k in gate.calibration if k not in lower)
            if wrong:
                raise ValueError(
                    f"gate.{task}.calibration: {', '.join(wrong)} not among: {', '.join(lower)}"
                )
        return self


def default_retrain_config_path() -> Path:
    """The packaged ``training/configs/retrain.toml``."""
    return Path(str(resources.files("training") / "configs" / "retrain.toml"))


def load_retrain_config(path: Path | None = None) -> RetrainConfig:
    """Parse ``path`` (default: the packaged config); unknown keys are errors."""
    path = path or default_retrain_config_path()
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    return RetrainConfig.model_validate(raw)
