"""Shared LightGBM settings and Platt calibration used by both tasks.

Importing this module needs no scikit-learn (the fitted models use :class:`Platt` to predict);
only fitting a Platt scaling does, and imports it then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

FloatArray = NDArray[np.float64]

#: A hyperparameter value as a fitted model records it (tuples as lists: JSON-ready).
Param = bool | int | float | str | None | list[int]


def plain_params(params: Mapping[str, Any]) -> dict[str, Param]:
    """An estimator's hyperparameters (``get_params(deep=False)``) as a fitted model keeps
    them: tuples and lists as lists of ints, everything else as given."""
    out: dict[str, Param] = {}
    for key, value in params.items():
        out[key] = [int(v) for v in value] if isinstance(value, tuple | list) else value
    return out


def booster_params(
    *,
    learning_rate: float,
    num_leaves: int,
    min_child_samples: int,
    subsample: float,
    colsample_bytree: float,
    reg_lambda: float,
    random_state: int,
    n_jobs: int,
    scale_pos_weight: float = 1.0,
) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_child_samples,
        # A category (cancer type, stage) may form its own branch once it holds as many rows as
        # a leaf; LightGBM's default (100) hid every cancer type of a small cohort from the trees.
        "min_data_per_group": min_child_samples,
        "bagging_fraction": subsample,
        "bagging_freq": 1 if subsample < 1.0 else 0,
        "feature_fraction": colsample_bytree,
        "lambda_l2": reg_lambda,
        "scale_pos_weight": scale_pos_weight,
        "seed": random_state,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": n_jobs,
        "verbosity": -1,
    }


#: Below this many rows LightGBM trains faster on one thread than on two (measured here).
SINGLE_THREAD_ROWS = 20_000

#: ``num_threads`` of every LightGBM prediction call (0: OpenMP's default, every core).
#:
#: LightGBM 4 keeps the ``num_threads`` of its latest call in one process-wide variable
#: (``OMP_SET_NUM_THREADS`` in its ``openmp_wrapper.cpp``), sizes per-thread buffers from it and
#: reads it again for its parallel loops. A call on another thread that changes it in between
#: makes a loop run more threads than there are buffers: a segfault in ``lib_lightgbm.so`` (seen
#: training tropism on 100,000 patients, sites trained side by side). LightGBM's docs say the
#: same: never change ``num_threads`` while jobs run at once. So calls that can overlap use one
#: value: this one for prediction (the service's requests, inline or in its thread pool, and the
#: single-row fast path), and :func:`training_threads` inside a fit. Training and serving
#: never overlap in one process (a job trains, then scores); code that makes them overlap must
#: use one value for both.
PREDICT_THREADS = 0


def training_threads(rows: int, n_jobs: int) -> int:
    """``num_threads`` for training on (and scoring within a fit) ``rows`` rows."""
    return 1 if rows < SINGLE_THREAD_ROWS else n_jobs


def train_booster(
    X: FloatArray,
    y: NDArray[np.bool_],
    params: dict[str, Any],
    n_estimators: int,
    categorical: tuple[int, ...],
) -> lgb.Booster:
    """A booster on ``X``; ``num_threads`` is :func:`training_threads` for its size."""
    threads = training_threads(X.shape[0], int(params["num_threads"]))
    params = {**params, "num_threads": threads}
    data = lgb.Dataset(
        X,
        label=y.astype(float),
        categorical_feature=list(categorical),
        free_raw_data=True,
        params={"verbosity": -1, "num_threads": threads},
    )
    return lgb.train(params, data, num_boost_round=n_estimators)


@dataclass(frozen=True)
class Platt:
    """p = sigmoid(slope * margin + intercept); identity when (1, 0)."""

    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, margin: FloatArray) -> FloatArray:
        result: FloatArray = expit(self.slope * margin + self.intercept)
        return result

    @classmethod
    def fit(cls, margin: FloatArray, y: NDArray[np.bool_]) -> Platt:
        if y.all() or not y.any():
            return cls()
        from sklearn.linear_model import LogisticRegression  # training only

        lr = LogisticRegression(C=1e4, max_iter=1000)
        lr.fit(margin.reshape(-1, 1), y)
        return cls(slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))


def brier(y: NDArray[np.bool_], p: FloatArray) -> float:
    return float(np.mean((p - y.astype(float)) ** 2))


def choose_calibration(margin_oof: FloatArray, y: NDArray[np.bool_], mode: str, seed: int) -> Platt:
    """Platt scaling when it lowers the Brier score of out-of-fold margins (cross-fitted).

    Never a slope at or below 0, whatever the mode: calibration rescales the model's margin, it
    does not reverse or erase its ranking. Held-out margins that point the wrong way (noise on
    a few hundred patients) leave the model uncalibrated; the champion guard judges its ranking.
    """
    if mode == "none":
        return Platt()
    fitted = Platt.fit(margin_oof, y)
    if fitted.slope <= 0.0:
        return Platt()
    if mode == "sigmoid":
        return fitted
    # "auto": compare raw vs cross-fitted calibrated Brier on the out-of-fold margins.
    rng = np.random.default_rng(seed)
    half = rng.random(y.size) < 0.5
    calibrated = np.empty_like(margin_oof)
    for part in (half, ~half):
        calibrated[part] = Platt.fit(margin_oof[~part], y[~part]).apply(margin_oof[part])
    raw = expit(margin_oof)
    return fitted if brier(y, calibrated) < brier(y, raw) else Platt()
