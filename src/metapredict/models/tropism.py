"""Organ tropism: one LightGBM binary model per site inside one sklearn estimator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import lightgbm as lgb
import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import Tags
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from metapredict.models.boosting import (
    SINGLE_THREAD_ROWS,
    Platt,
    booster_params,
    choose_calibration,
    plain_params,
    train_booster,
    training_threads,
)
from metapredict.models.fast_rows import fast_rows
from metapredict.models.tropism_model import TropismModel

FloatArray = NDArray[np.float64]


def _site_labels(y: ArrayLike) -> NDArray[np.bool_]:
    """0/1 or boolean labels, one column per site, as an (n, sites) bool matrix."""
    Y = np.asarray(y)
    kind = type_of_target(Y, input_name="y", raise_unknown=True)
    if kind not in {"binary", "multilabel-indicator"}:
        raise ValueError(
            "Only binary classification is supported (one 0/1 or boolean column per site); "
            f"the target is {kind}"
        )
    if Y.dtype.kind not in "biuf" or not np.isin(Y, (0, 1)).all():
        raise ValueError(
            "TropismClassifier expects 0/1 or boolean site labels; got labels "
            f"{np.unique(Y).tolist()}"
        )
    Y = Y.astype(bool)
    return Y.reshape(-1, 1) if Y.ndim == 1 else Y


class TropismClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Multi-label site classifier: ``predict_proba`` returns an (n, sites) matrix.

    Each site gets a LightGBM binary booster. Class imbalance: positives are up-weighted by
    sqrt(negatives / positives) (``balance=True``); probabilities are then re-calibrated with
    Platt scaling fitted on out-of-fold margins, kept only when it lowers the Brier score
    (``calibration="auto"``; "sigmoid" always, "none" never). Platt scaling is linear in the
    margin, so per-feature contributions stay exact in calibrated log-odds.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 30,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        balance: bool = True,
        calibration: str = "auto",
        calibration_folds: int = 3,
        categorical_features: tuple[int, ...] = (),
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.balance = balance
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.categorical_features = categorical_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values natively
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_class = False
        tags.classifier_tags.multi_label = True
        return tags

    def _params(self, y: NDArray[np.bool_]) -> dict[str, Any]:
        pos = max(int(y.sum()), 1)
        weight = float(np.sqrt((y.size - pos) / pos)) if self.balance else 1.0
        return booster_params(
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            scale_pos_weight=max(weight, 1.0),
        )

    def _fit_site(
        self,
        X: FloatArray,
        y: NDArray[np.bool_],
        k: int,
        held_out: tuple[FloatArray, NDArray[np.bool_]] | None = None,
    ) -> tuple[lgb.Booster, Platt]:
        """One site's booster and its calibration (from out-of-fold margins, or from the
        margins of the ``held_out`` patients: features and this site's labels)."""
        params = self._params(y)
        calibrator = Platt()
        if held_out is not None:
            booster = train_booster(X, y, params, self.n_estimators, self.categorical_features)
            X_h, y_h = held_out
            if self.calibration != "none" and 0 < y_h.sum() < y_h.size:
                threads = training_threads(len(y), self.n_jobs)
                margin = np.asarray(
                    booster.predict(X_h, raw_score=True, num_threads=threads), dtype=np.float64
                )
                calibrator = choose_calibration(
                    margin, y_h, self.calibration, self.random_state + k
                )
            return booster, calibrator
        if self.calibration != "none" and 0 < y.sum() < y.size:
            folds = min(self.calibration_folds, int(y.sum()), int((~y).sum()))
            if folds >= 2:
                oof = np.empty(y.size)
                splitter = StratifiedKFold(
                    n_splits=folds, shuffle=True, random_state=self.random_state
                )
                for tr, va in splitter.split(X, y):
                    b = train_booster(
                        X[tr], y[tr], params, self.n_estimators, self.categorical_features
                    )
                    # the training's own thread count: other sites may be training meanwhile
                    threads = training_threads(len(tr), self.n_jobs)
                    oof[va] = b.predict(X[va], raw_score=True, num_threads=threads)
                calibrator = choose_calibration(oof, y, self.calibration, self.random_state + k)
        booster = train_booster(X, y, params, self.n_estimators, self.categorical_features)
        return booster, calibrator

    def fit(
        self, X: ArrayLike, y: ArrayLike, *, held_out: tuple[ArrayLike, ArrayLike] | None = None
    ) -> Self:
        """Fit each site's booster and calibration (``held_out``: patients, features and site
        labels, to calibrate on instead of out-of-fold margins: the bootstrap members'
        out-of-bag patients, no extra fits)."""
        # The fitted model (and its fast handles) holds the boosters being replaced.
        self.__dict__.pop("model_", None)
        if self.calibration not in {"auto", "sigmoid", "none"}:
            raise ValueError("calibration must be 'auto', 'sigmoid' or 'none'")
        X_arr, Y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            ensure_all_finite="allow-nan",
            ensure_min_samples=2,
            dtype=np.float64,
        )
        Y = _site_labels(Y)
        self.n_outputs_ = Y.shape[1]
        self.classes_ = [np.array([False, True])] * self.n_outputs_
        # Sites are independent: on small data each booster trains on one thread (faster than
        # two, see SINGLE_THREAD_ROWS), so the sites share the n_jobs threads instead. LightGBM
        # releases the GIL while it trains; every site's model is the same either way. Every
        # LightGBM call in a site's fit then uses one thread (see boosting.PREDICT_THREADS).
        held: tuple[FloatArray, NDArray[np.bool_]] | None = None
        if held_out is not None:
            held = (np.asarray(held_out[0], dtype=np.float64), _site_labels(held_out[1]))

        def site(k: int) -> tuple[lgb.Booster, Platt]:
            site_held = None if held is None else (held[0], held[1][:, k])
            return self._fit_site(X_arr, Y[:, k], k, site_held)

        workers = min(self.n_jobs, self.n_outputs_) if X_arr.shape[0] < SINGLE_THREAD_ROWS else 1
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                fitted = list(pool.map(site, range(Y.shape[1])))
        else:
            fitted = [site(k) for k in range(Y.shape[1])]
        self.boosters_: list[lgb.Booster] = [booster for booster, _ in fitted]
        self.calibrators_: list[Platt] = [calibrator for _, calibrator in fitted]
        self.model_ = self._model()
        return self

    def _fitted(self) -> None:
        if "boosters_" not in self.__dict__:  # check_is_fitted costs microseconds per call
            check_is_fitted(self, "boosters_")

    def _model(self) -> TropismModel:
        """``model_``, the fitted model this estimator predicts with (what a predictor stores
        and serves), from the fitted boosters and calibrations."""
        return TropismModel(
            self.boosters_,
            self.calibrators_,
            int(self.n_features_in_),
            params=plain_params(self.get_params(deep=False)),
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "boosters_" in self.__dict__ and "model_" not in self.__dict__:
            self.model_ = self._model()  # pickled before the fitted model existed

    def _check(self, X: ArrayLike) -> FloatArray:
        """``X`` checked against the fit (the fast path's small float64 matrices as they are)."""
        self._fitted()
        small = fast_rows(X, self.n_features_in_)
        if small is not None:
            return small
        arr: FloatArray = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
        )
        return arr

    def margins(self, X: ArrayLike) -> FloatArray:
        """Calibrated log-odds per site, (n, sites)."""
        arr = self._check(X)  # checks the fit first
        return self.model_.margins(arr)

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        arr = self._check(X)  # checks the fit first
        return self.model_.predict_proba(arr)

    def predict(self, X: ArrayLike) -> NDArray[np.bool_]:
        return self.predict_proba(X) >= 0.5

    def contributions(self, X: ArrayLike) -> FloatArray:
        """Signed per-feature contributions to each site's calibrated log-odds.

        Shape (n, sites, n_features + 1); the last entry is the bias. Each row sums to the
        site's calibrated log-odds.
        """
        arr = self._check(X)  # checks the fit first
        return self.model_.contributions(arr)

    def feature_importance(self) -> FloatArray:
        """Total gain per feature, summed over sites, normalised to 1."""
        check_is_fitted(self, "boosters_")
        return self.model_.feature_importance()
