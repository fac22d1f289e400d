"""The fitted dormancy model: a discrete-time hazard booster and its Platt scaling.

What :class:`~metapredict.models.dormancy.DiscreteTimeHazard` (the scikit-learn estimator that
trains it) leaves behind, and what a loaded predictor predicts with: the estimator delegates its
predictions here, so training and serving run the same code. Needs no scikit-learn.

The booster's features are the patient's, then the start of the interval (months); its
calibrated output is the log-odds of relapse in that interval given none before. Survival is
S(t) = prod_{k < t/w} (1 - h_k(x)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import ArrayLike, NDArray

from metapredict.models.boosting import PREDICT_THREADS, Param, Platt
from metapredict.models.fast_rows import (
    CONTRIB,
    RAW,
    FastRowCache,
    as_matrix,
    fast_rows,
    predict_rows,
)
from metapredict.tasks import HORIZONS

FloatArray = NDArray[np.float64]

#: Output columns of :meth:`HazardModel.predict_outputs`.
OUTPUT_NAMES: tuple[str, ...] = (
    *(f"risk_{h}" for h in HORIZONS),
    "late_relapse",
)
#: P(relapse in (LATE_FROM, LATE_TO] | relapse-free at LATE_FROM).
LATE_FROM, LATE_TO = 60, 120
#: The calibration of a model fitted before hazards were calibrated.
IDENTITY = Platt()
#: How far the hazards :meth:`HazardModel.predict_outputs` needs reach.
OUTPUT_MONTHS = max(*HORIZONS, LATE_TO)


def outputs_from_hazards(h: FloatArray, interval_months: float) -> FloatArray:
    """(n, 4) outputs of :meth:`HazardModel.predict_outputs` from (n, intervals) hazards
    reaching ``OUTPUT_MONTHS``: risks at 36, 60, 120 months and the late-relapse probability."""
    survival = np.cumprod(1.0 - h, axis=1, dtype=np.float64)
    idx = [round(m / interval_months) - 1 for m in (*HORIZONS, LATE_FROM, LATE_TO)]
    risk = 1.0 - survival[:, idx]
    n_h = len(HORIZONS)
    at_from, at_to = risk[:, n_h], risk[:, n_h + 1]
    late = (at_to - at_from) / np.clip(1.0 - at_from, 1e-12, None)
    return np.column_stack([risk[:, :n_h], np.clip(late, 0.0, 1.0)])


class HazardModel:
    """The hazard booster (patient features + interval start), its calibration and intervals.

    ``params`` are the hyperparameters of the estimator that fitted it (recorded with the
    model). Fast single-row predictors are built on first use, per thread (never saved).
    """

    def __init__(
        self,
        booster: lgb.Booster,
        n_features: int,
        *,
        interval_months: float,
        max_months: float,
        calibrator: Platt = IDENTITY,
        n_person_periods: int = 0,
        params: dict[str, Param] | None = None,
    ) -> None:
        if interval_months <= 0 or max_months < interval_months:
            raise ValueError("interval_months must be positive and no longer than max_months")
        self.booster = booster
        self.n_features = n_features
        self.interval_months = float(interval_months)
        self.max_months = float(max_months)
        self.calibrator = calibrator
        self.n_person_periods = n_person_periods
        self.params: dict[str, Param] = dict(params or {})
        self.rows = FastRowCache()

    @property
    def n_intervals(self) -> int:
        return round(self.max_months / self.interval_months)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "rows"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.rows = FastRowCache()

    def expand(self, X: FloatArray, n_intervals: int) -> FloatArray:
        """Each patient's row once per interval, with the interval's start appended."""
        n, f = X.shape
        rows = np.empty((n * n_intervals, f + 1))
        rows[:, :-1] = np.repeat(X, n_intervals, axis=0)
        rows[:, -1] = np.tile(np.arange(n_intervals) * self.interval_months, n)
        return rows

    def hazards(self, X: ArrayLike, *, upto_months: float | None = None) -> FloatArray:
        """Per-interval hazard, (n, intervals) up to ``upto_months`` (default: max)."""
        small = fast_rows(X, self.n_features)
        arr = small if small is not None else as_matrix(X, self.n_features)
        k = self.n_intervals if upto_months is None else round(upto_months / self.interval_months)
        rows = self.expand(arr, k)
        if small is not None:
            fast = self.rows.get(0, self.booster, RAW, rows.shape[1])
            margin = np.empty((rows.shape[0], 1, 1))
            predict_rows((fast,), rows, margin)
        else:
            margin = np.asarray(
                self.booster.predict(rows, raw_score=True, num_threads=PREDICT_THREADS)
            )
        result: FloatArray = self.calibrator.apply(margin.reshape(arr.shape[0], k))
        return result

    def cumulative_risk(self, X: ArrayLike, months: Sequence[float] = HORIZONS) -> FloatArray:
        """P(distant relapse by each of ``months``), (n, len(months))."""
        h = self.hazards(X, upto_months=max(months))
        survival = np.cumprod(1.0 - h, axis=1, dtype=np.float64)
        idx = [round(m / self.interval_months) - 1 for m in months]
        result: FloatArray = 1.0 - survival[:, idx]
        return result

    def predict_outputs(self, X: ArrayLike) -> FloatArray:
        """(n, 4): cumulative risk at 36, 60, 120 months and P(relapse in (60,120] | free at 60)."""
        return outputs_from_hazards(
            self.hazards(X, upto_months=OUTPUT_MONTHS), self.interval_months
        )

    def contributions(self, X: ArrayLike, *, at_months: float = LATE_FROM) -> FloatArray:
        """Per-feature contributions to the log-odds of the relapse hazard at ``at_months``.

        Shape (n, n_features + 1); the last entry is the bias (which absorbs the time term).
        """
        small = fast_rows(X, self.n_features)
        arr = small if small is not None else as_matrix(X, self.n_features)
        rows = np.empty((arr.shape[0], arr.shape[1] + 1))
        rows[:, :-1] = arr
        rows[:, -1] = at_months
        if small is not None:
            fast = self.rows.get(0, self.booster, CONTRIB, rows.shape[1])
            contrib = np.empty((rows.shape[0], 1, fast.width))
            predict_rows((fast,), rows, contrib)
            contrib = contrib[:, 0, :]
        else:
            contrib = np.asarray(
                self.booster.predict(rows, pred_contrib=True, num_threads=PREDICT_THREADS)
            )
        cal = self.calibrator
        out = np.empty((arr.shape[0], arr.shape[1] + 1))
        out[:, :-1] = cal.slope * contrib[:, :-2]
        out[:, -1] = cal.slope * (contrib[:, -2] + contrib[:, -1]) + cal.intercept
        return out

    def feature_importance(self) -> FloatArray:
        """Total gain per patient feature (the interval start left out), normalised to 1."""
        gain = self.booster.feature_importance(importance_type="gain")[:-1]
        total = gain.sum()
        result: FloatArray = gain / total if total > 0 else gain
        return result
