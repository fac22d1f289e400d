"""Linear baselines scored in the same folds: logistic regression (tropism), Cox PH (dormancy)."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from metapredict.models.dormancy import LATE_FROM, LATE_TO, survival_arrays
from metapredict.tasks import HORIZONS

FloatArray = NDArray[np.float64]


def linear_preprocessor(n_features: int, categorical: tuple[int, ...]) -> ColumnTransformer:
    """Impute (median + missing indicator) and scale numbers; one-hot the categories."""
    numeric = [i for i in range(n_features) if i not in categorical]
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            ),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(categorical),
            ),
        ]
    )


class LogisticTropism(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """One L2 logistic regression per site; ``predict_proba`` returns (n, sites)."""

    def __init__(self, *, C: float = 1.0, categorical_features: tuple[int, ...] = ()) -> None:
        self.C = C
        self.categorical_features = categorical_features

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        X_arr = np.asarray(X, dtype=float)
        Y = np.asarray(y).astype(bool)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        self.n_features_in_ = X_arr.shape[1]
        self.n_outputs_ = Y.shape[1]
        self.classes_ = [np.array([False, True])] * self.n_outputs_
        self.preprocessor_ = linear_preprocessor(X_arr.shape[1], self.categorical_features)
        Z = self.preprocessor_.fit_transform(X_arr)
        self.models_: list[LogisticRegression | float] = []
        for k in range(self.n_outputs_):
            if Y[:, k].all() or not Y[:, k].any():
                self.models_.append(float(Y[:, k].mean()))
            else:
                self.models_.append(LogisticRegression(C=self.C, max_iter=2000).fit(Z, Y[:, k]))
        return self

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        check_is_fitted(self, "models_")
        Z = self.preprocessor_.transform(np.asarray(X, dtype=float))
        out = np.empty((Z.shape[0], self.n_outputs_))
        for k, model in enumerate(self.models_):
            out[:, k] = model if isinstance(model, float) else model.predict_proba(Z)[:, 1]
        return out

    def predict(self, X: ArrayLike) -> NDArray[np.bool_]:
        return self.predict_proba(X) >= 0.5


class CoxBaseline(BaseEstimator):  # type: ignore[misc]
    """Ridge-penalised Cox proportional hazards (scikit-survival) on the same features."""

    def __init__(self, *, alpha: float = 1.0, categorical_features: tuple[int, ...] = ()) -> None:
        self.alpha = alpha
        self.categorical_features = categorical_features

    def fit(self, X: ArrayLike, y: Any) -> Self:
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        X_arr = np.asarray(X, dtype=float)
        time, event = survival_arrays(y)
        self.n_features_in_ = X_arr.shape[1]
        self.model_: Pipeline = make_pipeline(
            linear_preprocessor(X_arr.shape[1], self.categorical_features),
            CoxPHSurvivalAnalysis(alpha=self.alpha, ties="efron"),
        )
        self.model_.fit(X_arr, Surv.from_arrays(event=event, time=time))
        return self

    def cumulative_risk(self, X: ArrayLike, months: tuple[float, ...] = HORIZONS) -> FloatArray:
        check_is_fitted(self, "model_")
        functions = self.model_.predict_survival_function(np.asarray(X, dtype=float))
        out = np.empty((len(functions), len(months)))
        for i, fn in enumerate(functions):
            grid = np.clip(np.asarray(months, dtype=float), fn.domain[0], fn.domain[1])
            out[i] = 1.0 - fn(grid)
        return out

    def predict_outputs(self, X: ArrayLike) -> FloatArray:
        risk = self.cumulative_risk(X, (*HORIZONS, LATE_FROM, LATE_TO))
        n_h = len(HORIZONS)
        late = (risk[:, n_h + 1] - risk[:, n_h]) / np.clip(1.0 - risk[:, n_h], 1e-12, None)
        return np.column_stack([risk[:, :n_h], np.clip(late, 0.0, 1.0)])

    def predict(self, X: ArrayLike) -> FloatArray:
        check_is_fitted(self, "model_")
        result: FloatArray = self.model_.predict(np.asarray(X, dtype=float))
        return result
