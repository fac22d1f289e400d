"""Seeded splits, cross-validation and held-out evaluation of every model family.

Knows nothing of MLflow: it returns metric dictionaries whose names are identical across
families (``cv_macro_auroc``, ``test_harrell_c``, ...) so runs compare side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedKFold, train_test_split

from metapredict import features, metrics, schema
from metapredict.models.dormancy import OUTPUT_NAMES as DORMANCY_OUTPUTS
from metapredict.training_config import Task

FloatArray = NDArray[np.float64]
Progress = Callable[[str], None]

#: Metrics reported per cancer-type slice.
SLICE_METRIC = {"tropism": "macro_auroc", "dormancy": "harrell_c"}
#: Metrics compared to the oracle.
ORACLE_METRICS = {
    "tropism": ("macro_auroc", *(f"auroc_{s}" for s in schema.sites())),
    "dormancy": ("harrell_c",),
}


class TaskEstimator(Protocol):
    def fit(self, X: Any, y: Any) -> Any: ...


@dataclass(frozen=True)
class TaskData:
    """The rows a task trains on, encoded, with targets and the train/test split."""

    task: Task
    frame: pd.DataFrame
    X: FloatArray
    y: Any  # (n, sites) bool for tropism; scikit-survival structured array for dormancy
    strata: NDArray[np.str_]
    train: NDArray[np.int64]
    test: NDArray[np.int64]

    @property
    def has_oracle(self) -> bool:
        return all(c in self.frame.columns for c in schema.oracle_columns())


def prepare(task: Task, cohort: pd.DataFrame, *, test_size: float, seed: int) -> TaskData:
    """Select the task's rows and targets, encode features, split stratified and seeded.

    Tropism trains on patients with an observed distant relapse (their organs are known);
    dormancy on everyone, with censoring. Strata: cancer type (tropism), cancer type x event
    (dormancy).
    """
    months, event = schema.survival_columns()
    if task == "tropism":
        frame = cohort[cohort[event].astype(bool)].reset_index(drop=True)
        y: Any = frame[list(schema.site_columns())].to_numpy(dtype=bool)
        strata = frame["cancer_type"].astype(str).to_numpy()
    else:
        from sksurv.util import Surv

        frame = cohort.reset_index(drop=True)
        y = Surv.from_arrays(
            event=frame[event].to_numpy(dtype=bool), time=frame[months].to_numpy(dtype=float)
        )
        strata = (
            frame["cancer_type"].astype(str) + ":" + frame[event].astype(bool).astype(str)
        ).to_numpy()
    if len(frame) < 50:
        raise ValueError(
            f"the {task} task needs at least 50 patients"
            f"{' with a distant relapse' if task == 'tropism' else ''}; this cohort has "
            f"{len(frame)}"
        )
    strata = _merge_rare(strata, minimum=4)
    index = np.arange(len(frame))
    train, test = train_test_split(index, test_size=test_size, random_state=seed, stratify=strata)
    return TaskData(
        task=task,
        frame=frame,
        X=features.encode_frame(frame),
        y=y,
        strata=strata,
        train=np.sort(train),
        test=np.sort(test),
    )


def _merge_rare(strata: NDArray[np.str_], minimum: int) -> NDArray[np.str_]:
    values, counts = np.unique(strata, return_counts=True)
    rare = set(values[counts < minimum])
    return np.array(["other" if s in rare else s for s in strata])


def _predict(task: Task, estimator: Any, X: FloatArray) -> FloatArray:
    """Tropism: (n, sites) probabilities; dormancy: (n, 4) risks 36/60/120 and late relapse."""
    if task == "tropism":
        result: FloatArray = estimator.predict_proba(X)
        return result
    result = estimator.predict_outputs(X)
    return result


def score(task: Task, y_train: Any, y_test: Any, prediction: FloatArray) -> dict[str, float]:
    """The task's metrics for one set of predictions (names identical across families)."""
    if task == "tropism":
        return metrics.tropism_metrics(y_test, prediction, schema.sites())
    from metapredict.models.dormancy import survival_arrays

    t_tr, e_tr = survival_arrays(y_train)
    t_te, e_te = survival_arrays(y_test)
    n_h = len(metrics.HORIZONS)
    return metrics.survival_metrics(t_tr, e_tr, t_te, e_te, prediction[:, :n_h])


@dataclass
class FamilyResult:
    family: str
    cv: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    slices: dict[str, float] = field(default_factory=dict)
    ratio_to_oracle: dict[str, float] = field(default_factory=dict)
    test_prediction: FloatArray | None = None
    estimator: Any = None

    def all_metrics(self) -> dict[str, float]:
        out = {f"cv_{k}": v for k, v in self.cv.items()}
        out |= {f"test_{k}": v for k, v in self.test.items()}
        out |= {f"test_{k}": v for k, v in self.slices.items()}
        out |= {f"test_{k}_ratio_to_oracle": v for k, v in self.ratio_to_oracle.items()}
        return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def _slices(task: Task, data: TaskData, prediction: FloatArray) -> dict[str, float]:
    out: dict[str, float] = {}
    types = data.frame["cancer_type"].astype(str).to_numpy()[data.test]
    name = SLICE_METRIC[task]
    for t in schema.CANCER_TYPES:
        mask = types == t
        if mask.sum() < 20:
            continue
        scored = score(task, data.y[data.train], data.y[data.test][mask], prediction[mask])
        out[f"{name}_{t}"] = scored[name]
    return out


def cross_validate(
    family: str,
    make: Callable[[], Any],
    data: TaskData,
    *,
    folds: int,
    seed: int,
    progress: Progress | None = None,
) -> FamilyResult:
    """K-fold CV on the training split, then a fit on the whole training split scored on test."""
    X_train, y_train = data.X[data.train], data.y[data.train]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold: list[dict[str, float]] = []
    for k, (tr, va) in enumerate(splitter.split(X_train, data.strata[data.train]), start=1):
        if progress:
            progress(f"{data.task} {family}: fold {k}/{folds}")
        est = make().fit(X_train[tr], y_train[tr])
        per_fold.append(
            score(data.task, y_train[tr], y_train[va], _predict(data.task, est, X_train[va]))
        )
    result = FamilyResult(family=family)
    for name in per_fold[0]:
        values = np.array([f[name] for f in per_fold], dtype=float)
        if np.isfinite(values).any():
            result.cv[name] = float(np.nanmean(values))
            result.cv[f"{name}_std"] = float(np.nanstd(values))
    if progress:
        progress(f"{data.task} {family}: final fit on the training split")
    est = make().fit(X_train, y_train)
    prediction = _predict(data.task, est, data.X[data.test])
    result.test = score(data.task, y_train, data.y[data.test], prediction)
    result.slices = _slices(data.task, data, prediction)
    result.test_prediction = prediction
    result.estimator = est
    return result


def oracle_prediction(task: Task, frame: pd.DataFrame) -> FloatArray:
    if task == "tropism":
        cols = [f"oracle_{c}" for c in schema.site_columns()]
    else:
        cols = [f"oracle_risk_{h}" for h in metrics.HORIZONS] + ["oracle_late_relapse"]
        assert len(cols) == len(DORMANCY_OUTPUTS)
    result: FloatArray = frame[cols].to_numpy(dtype=float)
    return result


def evaluate_oracle(data: TaskData) -> FamilyResult | None:
    """The simulator's truth scored on the same test split (None for real cohorts)."""
    if not data.has_oracle:
        return None
    prediction = oracle_prediction(data.task, data.frame.iloc[data.test])
    result = FamilyResult(family="oracle")
    result.test = score(data.task, data.y[data.train], data.y[data.test], prediction)
    result.slices = _slices(data.task, data, prediction)
    result.test_prediction = prediction
    return result


def add_oracle_ratios(result: FamilyResult, oracle: FamilyResult | None, task: Task) -> None:
    if oracle is None:
        return
    for name in ORACLE_METRICS[task]:
        ours, best = result.test.get(name), oracle.test.get(name)
        if ours is not None and best is not None and np.isfinite(ours) and best > 0:
            result.ratio_to_oracle[name] = float(ours / best)
