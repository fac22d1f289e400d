"""Linear baselines: logistic regression per site and ridge Cox, on encoded simulated rows."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sksurv.util import Surv

from metapredict import features, schema
from metapredict.models.baselines import CoxBaseline, LogisticTropism
from tests.support import types_of

CAT = features.categorical_indices()
EXTRAS = [features.feature_names().index(c) for c in schema.extra_columns()]


@pytest.fixture(scope="module")
def rows(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    return simulated_cohort.head(400)


@pytest.fixture(scope="module")
def X(rows: pd.DataFrame) -> NDArray[np.float64]:
    return features.encode_frame(rows, types_of(rows))


@pytest.fixture(scope="module")
def sites(rows: pd.DataFrame) -> NDArray[np.bool_]:
    return rows[list(schema.site_columns())].to_numpy(dtype=bool)


@pytest.fixture(scope="module")
def survival(rows: pd.DataFrame) -> NDArray[Any]:
    months, event = schema.survival_columns()
    return Surv.from_arrays(event=rows[event].to_numpy(bool), time=rows[months].to_numpy(float))


@pytest.fixture(scope="module")
def cox(X: NDArray[np.float64], survival: NDArray[Any]) -> CoxBaseline:
    return CoxBaseline(categorical_features=CAT).fit(X, survival)


def test_logistic_gives_one_probability_per_site(
    X: NDArray[np.float64], sites: NDArray[np.bool_]
) -> None:
    model = LogisticTropism(categorical_features=CAT).fit(X, sites)
    proba = model.predict_proba(X[:30])
    assert proba.shape == (30, len(schema.sites()))
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(model.predict(X[:30]), proba >= 0.5)


def test_logistic_site_with_one_class_predicts_its_rate(
    X: NDArray[np.float64], sites: NDArray[np.bool_]
) -> None:
    labels = sites.copy()
    labels[:, 0] = False
    labels[:, 1] = True
    proba = LogisticTropism(categorical_features=CAT).fit(X, labels).predict_proba(X[:5])
    np.testing.assert_array_equal(proba[:, 0], 0.0)
    np.testing.assert_array_equal(proba[:, 1], 1.0)


def test_logistic_follows_a_planted_direction() -> None:
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 3))
    y = rng.random(300) < 1 / (1 + np.exp(-2 * Z[:, 0]))
    proba = LogisticTropism().fit(Z, y).predict_proba(np.array([[-1.0, 0, 0], [1.0, 0, 0]]))
    assert proba.shape == (2, 1)
    assert proba[1, 0] > proba[0, 0] + 0.3


def test_cox_risks_are_probabilities_that_grow_with_the_horizon(
    cox: CoxBaseline, X: NDArray[np.float64]
) -> None:
    risk = cox.cumulative_risk(X[:40], (6, 12, 36, 60, 120, 150))
    assert risk.shape == (40, 6)
    assert ((risk >= 0) & (risk <= 1)).all()
    assert (np.diff(risk, axis=1) >= -1e-12).all()
    outputs = cox.predict_outputs(X[:40])
    assert outputs.shape == (40, 4)
    assert ((outputs >= 0) & (outputs <= 1)).all()
    np.testing.assert_allclose(outputs[:, :3], cox.cumulative_risk(X[:40]))


def test_cox_risk_score_orders_patients_like_their_risk(
    cox: CoxBaseline, X: NDArray[np.float64]
) -> None:
    score = cox.predict(X[:40])
    risk_120 = cox.cumulative_risk(X[:40], (120,))[:, 0]
    order = np.argsort(score)
    assert (np.diff(risk_120[order]) >= -1e-12).all()  # proportional hazards: same order


def test_cox_ranks_a_planted_high_risk_group_higher() -> None:
    rng = np.random.default_rng(1)
    g = np.repeat([1.0, 0.0], 150)
    Z = np.column_stack([g, rng.normal(size=300)])
    relapse = rng.exponential(np.where(g == 1, 30.0, 200.0))
    y = Surv.from_arrays(event=relapse <= 150, time=np.minimum(relapse, 150.0))
    risk = CoxBaseline().fit(Z, y).cumulative_risk(np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert (risk[0] > risk[1]).all()


@pytest.mark.parametrize("family", ["logistic", "cox"])
def test_all_missing_extras_neither_warn_nor_crash(
    family: str,
    X: NDArray[np.float64],
    sites: NDArray[np.bool_],
    survival: NDArray[Any],
) -> None:
    """A real cohort without platelet counts, MDSC scores, ... (columns entirely NaN)."""
    empty = X.copy()
    empty[:, EXTRAS] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if family == "logistic":
            out = LogisticTropism(categorical_features=CAT).fit(empty, sites).predict_proba(empty)
        else:
            out = CoxBaseline(categorical_features=CAT).fit(empty, survival).predict_outputs(empty)
    assert np.isfinite(out).all()


# -- the sklearn contract -----------------------------------------------------------------------

ESTIMATORS = [LogisticTropism, CoxBaseline]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_constructor_parameters_are_keyword_only(cls: type[BaseEstimator]) -> None:
    params = inspect.signature(cls.__init__).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY for p in params if p.name != "self")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_params_and_fitted_attributes(
    cls: type[BaseEstimator],
    X: NDArray[np.float64],
    sites: NDArray[np.bool_],
    survival: NDArray[Any],
) -> None:
    model = cls(categorical_features=CAT)
    copy = clone(model.set_params(**{"C" if cls is LogisticTropism else "alpha": 0.5}))
    assert copy.get_params() == model.get_params()
    before = set(vars(copy))
    copy.fit(X, sites if cls is LogisticTropism else survival)
    added = set(vars(copy)) - before
    assert "n_features_in_" in added
    assert all(name.endswith("_") for name in added), added
    assert not any(name.endswith("_") for name in clone(copy).__dict__)


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        (LogisticTropism, "predict_proba"),
        (LogisticTropism, "predict"),
        (CoxBaseline, "cumulative_risk"),
        (CoxBaseline, "predict_outputs"),
        (CoxBaseline, "predict"),
    ],
)
def test_unfitted_model_raises_not_fitted(cls: type[BaseEstimator], method: str) -> None:
    with pytest.raises(NotFittedError):
        getattr(cls(), method)(np.zeros((2, 3)))
