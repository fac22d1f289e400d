"""Dormancy / late-relapse risk: a discrete-time hazard model with LightGBM.

Follow-up is cut into intervals (6 months by default). Each patient contributes one row per
interval in which they were at risk (person-period data), with the interval's start as an extra
feature; the target is "distant relapse in this interval". A censored patient contributes
only the intervals they were observed through (the interval of censoring counts when at least
half of it was observed), so censoring is never mistaken for "no relapse". The booster learns
the hazard h_k(x); survival S(t) = prod_{k < t/w} (1 - h_k(x)).

The hazard's log-odds are then re-calibrated with Platt scaling (``calibration="auto"``, as the
tropism sites are): a slope and an intercept fitted by logistic regression of held-out
person-period rows on the booster's margins, and kept when they lower those rows' Brier score.
On a few hundred patients a booster of shallow, L2-penalised trees stops far short of the
hazards' true range (the penalty weighs against hessians of rare events): it pulls every
patient towards the average, and held-out rows show it (slope above 1). Platt scaling is linear
in the margin, so the per-feature contributions stay exact in calibrated log-odds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import lightgbm as lgb
import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted, validate_data

from metapredict.models.boosting import (
    Platt,
    booster_params,
    choose_calibration,
    plain_params,
    train_booster,
    training_threads,
)
from metapredict.models.fast_rows import fast_rows
from metapredict.models.hazard_model import (
    IDENTITY,
    LATE_FROM,
    LATE_TO,
    OUTPUT_MONTHS,
    OUTPUT_NAMES,
    HazardModel,
    outputs_from_hazards,
)
from metapredict.tasks import HORIZONS

__all__ = [
    "IDENTITY",
    "LATE_FROM",
    "LATE_TO",
    "OUTPUT_MONTHS",
    "OUTPUT_NAMES",
    "DiscreteTimeHazard",
    "HazardModel",
    "outputs_from_hazards",
    "person_period",
    "survival_arrays",
]

FloatArray = NDArray[np.float64]


def survival_arrays(y: Any) -> tuple[FloatArray, NDArray[np.bool_]]:
    """(time, event) from a scikit-survival structured array or an (n, 2) array."""
    arr = np.asarray(y)
    if arr.dtype.names:
        event_field, time_field = arr.dtype.names[0], arr.dtype.names[1]
        return arr[time_field].astype(float), arr[event_field].astype(bool)
    arr = arr.reshape(-1, 2)
    return arr[:, 0].astype(float), arr[:, 1].astype(bool)


def person_period(
    X: FloatArray, time: FloatArray, event: NDArray[np.bool_], width: float, n_intervals: int
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Expand patients into (patient x interval) rows with the interval start appended."""
    full = np.floor(time / width).astype(np.int64)
    partial = time - full * width
    # Intervals with target 0 the patient survived through, and whether a last row is added.
    n_rows = np.minimum(full, n_intervals)
    last = (full < n_intervals) & (event | (partial >= width / 2.0))
    counts = n_rows + last.astype(np.int64)
    patient = np.repeat(np.arange(X.shape[0]), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    target = np.zeros(patient.size, dtype=bool)
    ends = np.cumsum(counts) - 1
    target[ends[last & event]] = True
    rows = np.empty((patient.size, X.shape[1] + 1))
    rows[:, :-1] = X[patient]
    rows[:, -1] = offsets * width
    return rows, target


class DiscreteTimeHazard(BaseEstimator):  # type: ignore[misc]
    """Survival estimator; ``fit(X, y)`` takes a scikit-survival structured ``y``.

    ``predict`` returns a risk score (cumulative risk by 120 months; higher = earlier relapse),
    following scikit-survival's convention; ``predict_outputs`` the cumulative risk at 36, 60
    and 120 months and the late-relapse probability.

    ``calibration``: "auto" fits Platt scaling of the hazard's log-odds on out-of-fold
    person-period rows (``calibration_folds`` folds of patients) and keeps it when it lowers
    their Brier score; "sigmoid" always keeps it; "none" never fits it. ``fit(...,
    held_out=(X, y))`` calibrates on those patients instead of folds (the bootstrap members'
    out-of-bag patients: no extra fits).
    """

    def __init__(
        self,
        *,
        interval_months: float = 6.0,
        max_months: float = 180.0,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        calibration: str = "auto",
        calibration_folds: int = 2,
        categorical_features: tuple[int, ...] = (),
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.interval_months = interval_months
        self.max_months = max_months
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.categorical_features = categorical_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def _n_intervals(self) -> int:
        return round(self.max_months / self.interval_months)

    def _fitted(self) -> None:
        if "booster_" not in self.__dict__:  # check_is_fitted costs microseconds per call
            check_is_fitted(self, "booster_")

    def _model(self) -> HazardModel:
        """``model_``, the fitted model this estimator predicts with (what a predictor stores
        and serves), from the fitted booster and calibration."""
        return HazardModel(
            self.booster_,
            int(self.n_features_in_),
            interval_months=self.interval_months,
            max_months=self.max_months,
            calibrator=self._calibration(),
            n_person_periods=int(self.__dict__.get("n_person_periods_", 0)),
            params=plain_params(self.get_params(deep=False)),
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "booster_" in self.__dict__ and "model_" not in self.__dict__:
            self.model_ = self._model()  # pickled before the fitted model existed

    def fit(self, X: ArrayLike, y: Any, *, held_out: tuple[ArrayLike, Any] | None = None) -> Self:
        """Fit the hazard booster, then its calibration (``held_out``: calibrate on those
        patients' person-period rows instead of out-of-fold ones)."""
        # The fitted model (and its fast handles) holds the booster being replaced.
        self.__dict__.pop("model_", None)
        if self.calibration not in {"auto", "sigmoid", "none"}:
            raise ValueError("calibration must be 'auto', 'sigmoid' or 'none'")
        for h in (*HORIZONS, LATE_FROM, LATE_TO):
            if abs(h / self.interval_months - round(h / self.interval_months)) > 1e-9:
                raise ValueError(f"interval_months must divide the horizon {h} months")
            if h > self.max_months:
                raise ValueError(f"max_months must reach the horizon {h} months")
        time, event = survival_arrays(y)
        X_arr = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        if time.shape[0] != X_arr.shape[0]:
            raise ValueError("X and y have different numbers of patients")
        if (time < 0).any():
            raise ValueError("survival times must be non-negative")
        rows, target = person_period(X_arr, time, event, self.interval_months, self._n_intervals)
        params = booster_params(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        self.booster_: lgb.Booster = train_booster(
            rows, target, params, self.n_estimators, self.categorical_features
        )
        self.n_person_periods_ = int(rows.shape[0])
        self.calibrator_ = Platt()
        if self.calibration != "none":
            margins, targets = self._held_out_margins(X_arr, time, event, params, held_out)
            if 0 < targets.sum() < targets.size:
                self.calibrator_ = choose_calibration(
                    margins, targets, self.calibration, self.random_state
                )
        self.model_ = self._model()
        return self

    def _held_out_margins(
        self,
        X: FloatArray,
        time: FloatArray,
        event: NDArray[np.bool_],
        params: dict[str, Any],
        held_out: tuple[ArrayLike, Any] | None,
    ) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Booster margins and targets of person-period rows the booster did not see."""
        width, n = self.interval_months, self._n_intervals
        if held_out is not None:
            X_h = np.asarray(held_out[0], dtype=np.float64)
            t_h, e_h = survival_arrays(held_out[1])
            rows, target = person_period(X_h, t_h, e_h, width, n)
            threads = training_threads(rows.shape[0], self.n_jobs)
            margins = self.booster_.predict(rows, raw_score=True, num_threads=threads)
            return np.asarray(margins, dtype=np.float64), target
        folds = min(self.calibration_folds, int(event.sum()), int((~event).sum()))
        if folds < 2:
            return np.empty(0), np.zeros(0, dtype=bool)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state)
        parts: list[tuple[FloatArray, NDArray[np.bool_]]] = []
        for tr, va in splitter.split(X, event):
            fold_rows, fold_target = person_period(X[tr], time[tr], event[tr], width, n)
            booster = train_booster(
                fold_rows, fold_target, params, self.n_estimators, self.categorical_features
            )
            rows, target = person_period(X[va], time[va], event[va], width, n)
            threads = training_threads(fold_rows.shape[0], self.n_jobs)
            margins = booster.predict(rows, raw_score=True, num_threads=threads)
            parts.append((np.asarray(margins, dtype=np.float64), target))
        return (
            np.concatenate([m for m, _ in parts]),
            np.concatenate([t for _, t in parts]),
        )

    def _validated(self, X: ArrayLike) -> FloatArray:
        arr: FloatArray = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
        )
        return arr

    def _matrix(self, X: ArrayLike) -> FloatArray:
        """``X`` checked against the fit (the fast path's small float64 matrices as they are)."""
        self._fitted()
        small = fast_rows(X, self.n_features_in_)
        return small if small is not None else self._validated(X)

    def hazards(self, X: ArrayLike, *, upto_months: float | None = None) -> FloatArray:
        """Per-interval hazard, (n, intervals) up to ``upto_months`` (default: max)."""
        arr = self._matrix(X)  # checks the fit first
        return self.model_.hazards(arr, upto_months=upto_months)

    def _calibration(self) -> Platt:
        """The hazard's Platt scaling (identity for a model fitted before it existed)."""
        calibrator: Platt = self.__dict__.get("calibrator_", IDENTITY)
        return calibrator

    def cumulative_risk(self, X: ArrayLike, months: Sequence[float] = HORIZONS) -> FloatArray:
        """P(distant relapse by each of ``months``), (n, len(months))."""
        arr = self._matrix(X)  # checks the fit first
        return self.model_.cumulative_risk(arr, months)

    def predict_outputs(self, X: ArrayLike) -> FloatArray:
        """(n, 4): cumulative risk at 36, 60, 120 months and P(relapse in (60,120] | free at 60)."""
        arr = self._matrix(X)  # checks the fit first
        return self.model_.predict_outputs(arr)

    def predict(self, X: ArrayLike) -> FloatArray:
        result: FloatArray = self.cumulative_risk(X, (HORIZONS[-1],))[:, 0]
        return result

    def contributions(self, X: ArrayLike, *, at_months: float = LATE_FROM) -> FloatArray:
        """Per-feature contributions to the log-odds of the relapse hazard at ``at_months``.

        Shape (n, n_features + 1); the last entry is the bias (which absorbs the time term).
        """
        arr = self._matrix(X)  # checks the fit first
        return self.model_.contributions(arr, at_months=at_months)

    def feature_importance(self) -> FloatArray:
        check_is_fitted(self, "booster_")
        return self.model_.feature_importance()
