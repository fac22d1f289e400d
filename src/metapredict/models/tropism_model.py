"""The fitted tropism model: one LightGBM booster and one Platt scaling per site.

What :class:`~metapredict.models.tropism.TropismClassifier` (the scikit-learn estimator that
trains it) leaves behind, and what a loaded predictor predicts with: the estimator delegates its
predictions here, so training and serving run the same code. Needs no scikit-learn.
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

FloatArray = NDArray[np.float64]


class TropismModel:
    """Per-site boosters and calibrations; ``margins`` are calibrated log-odds, (n, sites).

    ``params`` are the hyperparameters of the estimator that fitted it (recorded with the
    model). Fast single-row predictors are built on first use, per thread (never saved).
    """

    def __init__(
        self,
        boosters: Sequence[lgb.Booster],
        calibrators: Sequence[Platt],
        n_features: int,
        params: dict[str, Param] | None = None,
    ) -> None:
        if len(boosters) != len(calibrators) or not boosters:
            raise ValueError("a tropism model needs one calibration per site's booster")
        self.boosters = list(boosters)
        self.calibrators = list(calibrators)
        self.n_features = n_features
        self.params: dict[str, Param] = dict(params or {})
        self.slopes = np.array([c.slope for c in self.calibrators], dtype=np.float64)
        self.intercepts = np.array([c.intercept for c in self.calibrators], dtype=np.float64)
        self.rows = FastRowCache()

    @property
    def n_outputs(self) -> int:
        return len(self.boosters)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "rows"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.rows = FastRowCache()

    def _fast(self, X: ArrayLike, predict_type: int) -> FloatArray | None:
        """Per-row fast path for small batches (the HTTP request path)."""
        arr = fast_rows(X, self.n_features)
        if arr is None:
            return None
        width = arr.shape[1] + 1 if predict_type == CONTRIB else 1
        out = np.empty((arr.shape[0], self.n_outputs, width))
        predictors = self.rows.get_all(self.boosters, predict_type, arr.shape[1])
        predict_rows(predictors, arr, out)
        return out

    def margins(self, X: ArrayLike) -> FloatArray:
        """Calibrated log-odds per site, (n, sites)."""
        fast = self._fast(X, RAW)
        if fast is not None:
            result: FloatArray = fast[:, :, 0] * self.slopes + self.intercepts
            return result
        arr = as_matrix(X, self.n_features)
        out = np.empty((arr.shape[0], self.n_outputs))
        for k, (b, cal) in enumerate(zip(self.boosters, self.calibrators, strict=True)):
            raw = np.asarray(b.predict(arr, raw_score=True, num_threads=PREDICT_THREADS))
            out[:, k] = cal.slope * raw + cal.intercept
        return out

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Calibrated probability per site, (n, sites)."""
        result: FloatArray = 1.0 / (1.0 + np.exp(-self.margins(X)))
        return result

    def contributions(self, X: ArrayLike) -> FloatArray:
        """Signed per-feature contributions to each site's calibrated log-odds.

        Shape (n, sites, n_features + 1); the last entry is the bias. Each row sums to the
        site's calibrated log-odds.
        """
        fast = self._fast(X, CONTRIB)
        if fast is not None:
            fast *= self.slopes[:, None]  # the same products and sums as site by site
            fast[:, :, -1] += self.intercepts
            return fast
        arr = as_matrix(X, self.n_features)
        out = np.empty((arr.shape[0], self.n_outputs, arr.shape[1] + 1))
        for k, (b, cal) in enumerate(zip(self.boosters, self.calibrators, strict=True)):
            contrib = np.asarray(b.predict(arr, pred_contrib=True, num_threads=PREDICT_THREADS))
            contrib = cal.slope * contrib
            contrib[:, -1] += cal.intercept
            out[:, k, :] = contrib
        return out

    def feature_importance(self) -> FloatArray:
        """Total gain per feature, summed over sites, normalised to 1."""
        gain = sum(
            (b.feature_importance(importance_type="gain") for b in self.boosters),
            start=np.zeros(self.n_features),
        )
        total = gain.sum()
        result: FloatArray = gain / total if total > 0 else gain
        return result
