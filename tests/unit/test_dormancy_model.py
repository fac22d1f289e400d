"""Discrete-time hazard model: person-period expansion, risks, censoring, contributions."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import logit
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sksurv.util import Surv

from metapredict.models.dormancy import (
    OUTPUT_NAMES,
    DiscreteTimeHazard,
    person_period,
    survival_arrays,
)

Fitted = tuple[DiscreteTimeHazard, NDArray[np.float64], NDArray[np.float64]]

SMALL: dict[str, Any] = {"n_estimators": 30, "min_child_samples": 20, "num_leaves": 7, "n_jobs": 1}


def _groups(
    n: int, *, rate_a: float, rate_b: float, censor_b: float | None, seed: int
) -> tuple[NDArray[np.float64], NDArray[Any], NDArray[np.float64]]:
    """Column 0: group (1 = A, 0 = B); column 1: noise. Exponential relapse times.

    A is followed to 180 months; B to 180 months too, or censored uniformly in (0, censor_b).
    A rate of 0 means "never relapses". Returns X, structured y and the group indicator.
    """
    rng = np.random.default_rng(seed)
    g = np.repeat([1.0, 0.0], n // 2)
    X = np.column_stack([g, rng.normal(size=g.size)])
    rate = np.where(g == 1, rate_a, rate_b)
    relapse = np.where(rate > 0, rng.exponential(1 / np.maximum(rate, 1e-12)), np.inf)
    follow_up = np.full(g.size, 180.0)
    if censor_b is not None:
        follow_up[g == 0] = rng.uniform(0.0, censor_b, size=int((g == 0).sum()))
    time = np.minimum(relapse, follow_up)
    return X, Surv.from_arrays(event=relapse <= follow_up, time=time), g


@pytest.fixture(scope="module")
def early_vs_never() -> Fitted:
    """Group A relapses early (~2.5 %/month), group B never does; both followed 180 months."""
    X, y, g = _groups(600, rate_a=0.025, rate_b=0.0, censor_b=None, seed=0)
    return DiscreteTimeHazard(**SMALL).fit(X, y), X, g


# -- person-period expansion, worked by hand ----------------------------------------------------


def test_person_period_on_a_hand_worked_example() -> None:
    # width 6 months, 4 intervals (24 months); feature = patient number.
    time = np.array([15.0, 14.0, 16.0, 40.0, 2.0, 1.0])
    event = np.array([True, False, False, True, True, False])
    X = np.arange(6.0).reshape(-1, 1)
    rows, target = person_period(X, time, event, width=6.0, n_intervals=4)
    expected = [
        # relapse at 15: at risk in [0,6), [6,12); relapses in the 3rd interval [12,18)
        (0, 0, False), (0, 6, False), (0, 12, True),
        # censored at 14: 2 of 6 months of [12,18) observed (< half): no row for it
        (1, 0, False), (1, 6, False),
        # censored at 16: 4 of 6 months observed (>= half): counts as relapse-free there
        (2, 0, False), (2, 6, False), (2, 12, False),
        # relapse at 40, beyond the 24 months modelled: truncated, relapse-free throughout
        (3, 0, False), (3, 6, False), (3, 12, False), (3, 18, False),
        # relapse at 2: one row, relapsed in the first interval
        (4, 0, True),
        # censored at 1 (< half of the first interval): contributes nothing
    ]  # fmt: skip
    got = [(int(p), int(s), bool(t)) for (p, s), t in zip(rows, target, strict=True)]
    assert got == expected


def test_person_period_keeps_every_feature_of_the_patient() -> None:
    X = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    rows, _ = person_period(X, np.array([13.0, 7.0]), np.array([True, True]), 6.0, 30)
    assert rows.shape == (5, 4)
    np.testing.assert_array_equal(rows[:3, :3], np.repeat(X[:1], 3, axis=0))
    np.testing.assert_array_equal(rows[3:, :3], np.repeat(X[1:], 2, axis=0))
    np.testing.assert_array_equal(rows[:, 3], [0.0, 6.0, 12.0, 0.0, 6.0])


def test_survival_arrays_read_structured_and_plain_arrays() -> None:
    time, event = np.array([3.0, 9.5]), np.array([True, False])
    structured = Surv.from_arrays(event=event, time=time)
    plain = np.column_stack([time, event])
    for y in (structured, plain):
        got_time, got_event = survival_arrays(y)
        np.testing.assert_array_equal(got_time, time)
        np.testing.assert_array_equal(got_event, event)


# -- fitted model -------------------------------------------------------------------------------


def test_risks_are_probabilities_that_grow_with_the_horizon(early_vs_never: Fitted) -> None:
    model, X, _ = early_vs_never
    months = tuple(range(6, 181, 6))
    risk = model.cumulative_risk(X[:50], months)
    assert risk.shape == (50, len(months))
    assert ((risk >= 0) & (risk <= 1)).all()
    assert (np.diff(risk, axis=1) >= -1e-12).all()
    outputs = model.predict_outputs(X[:50])
    assert outputs.shape == (50, len(OUTPUT_NAMES))
    assert ((outputs >= 0) & (outputs <= 1)).all()
    np.testing.assert_array_equal(outputs[:, :3], model.cumulative_risk(X[:50], (36, 60, 120)))
    np.testing.assert_array_equal(model.predict(X[:50]), outputs[:, 2])


def test_late_relapse_is_the_conditional_risk_after_60_months(early_vs_never: Fitted) -> None:
    model, X, _ = early_vs_never
    r60, r120 = model.cumulative_risk(X[:20], (60, 120)).T
    late = model.predict_outputs(X[:20])[:, 3]
    np.testing.assert_allclose(late, (r120 - r60) / (1 - r60), rtol=1e-12)


def test_the_early_relapsing_group_gets_the_higher_risk(early_vs_never: Fitted) -> None:
    model, X, g = early_vs_never
    risk = model.predict_outputs(X)
    a, b = risk[g == 1], risk[g == 0]
    for k in range(3):  # every horizon, patient by patient
        assert a[:, k].min() > b[:, k].max()
    assert a[:, 1].mean() == pytest.approx(1 - np.exp(-0.025 * 60), abs=0.1)
    assert b[:, 2].mean() < a[:, 2].mean() / 3  # 30 shrunken trees: not quite 0


def test_censored_patients_are_not_counted_as_relapse_free() -> None:
    """Equal true hazards; group B is censored early. B must not look protected."""
    X, y, g = _groups(1600, rate_a=0.01, rate_b=0.01, censor_b=60.0, seed=0)
    time, event = survival_arrays(y)
    naive = [(event & (time <= 120))[g == k].mean() for k in (1, 0)]
    assert naive[0] - naive[1] > 0.3, "the scenario must fool a naive 'relapsed by 120' label"

    risk_120 = DiscreteTimeHazard(**SMALL).fit(X, y).predict(X)
    truth = 1 - np.exp(-0.01 * 120)
    assert abs(risk_120[g == 1].mean() - risk_120[g == 0].mean()) < 0.06
    assert risk_120[g == 0].mean() == pytest.approx(truth, abs=0.07)


def test_contributions_sum_to_the_hazard_log_odds_at_the_requested_time(
    early_vs_never: Fitted,
) -> None:
    model, X, _ = early_vs_never
    X = X[:15].copy()
    X[0, 1] = np.nan
    hazards = model.hazards(X)
    assert hazards.shape == (15, 30)  # 180 months / 6
    for at in (0.0, 60.0, 150.0):
        contrib = model.contributions(X, at_months=at)
        assert contrib.shape == (15, 3)  # two features + bias (which absorbs the time term)
        k = int(at / 6)
        np.testing.assert_allclose(contrib.sum(axis=1), logit(hazards[:, k]), rtol=0, atol=1e-9)
    importance = model.feature_importance()
    assert importance.shape == (2,)  # the time column is not a feature
    assert importance.argmax() == 0


def test_same_random_state_gives_identical_risks() -> None:
    X, y, _ = _groups(300, rate_a=0.02, rate_b=0.01, censor_b=None, seed=1)
    params = {**SMALL, "subsample": 0.7, "random_state": 5}
    first = DiscreteTimeHazard(**params).fit(X, y).predict_outputs(X)
    second = DiscreteTimeHazard(**params).fit(X, y).predict_outputs(X)
    np.testing.assert_array_equal(first, second)


def test_small_batches_give_the_same_outputs_as_large_ones(early_vs_never: Fitted) -> None:
    """Batches of a few rows take a single-row fast path; it must agree with the batch path."""
    model, X, _ = early_vs_never
    few, many = X[[0, -1]], X[np.r_[0:20, -20:0]]
    np.testing.assert_allclose(
        model.predict_outputs(few), model.predict_outputs(many)[[0, -1]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        model.contributions(few), model.contributions(many)[[0, -1]], rtol=0, atol=1e-12
    )


def test_refitting_replaces_the_model_for_small_batches_too() -> None:
    X, y, _ = _groups(300, rate_a=0.02, rate_b=0.005, censor_b=None, seed=2)
    model = DiscreteTimeHazard(**SMALL).fit(X, y)
    model.predict_outputs(X[:2])  # builds the single-row fast path for the first booster
    model.fit(X[:, :1], y)  # another feature count, another booster
    fresh = DiscreteTimeHazard(**SMALL).fit(X[:, :1], y)
    np.testing.assert_array_equal(
        model.predict_outputs(X[:2, :1]), fresh.predict_outputs(X[:2, :1])
    )
    np.testing.assert_array_equal(model.contributions(X[:2, :1]), fresh.contributions(X[:2, :1]))


# -- refusals -----------------------------------------------------------------------------------

_X = np.zeros((4, 2))
_Y = Surv.from_arrays(event=[True, False, True, False], time=[3.0, 50.0, 70.0, 130.0])


@pytest.mark.parametrize("interval", [7.0, 9.0, 10.0, 24.0, 5.5])
def test_intervals_that_do_not_divide_the_horizons_are_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="must divide the horizon"):
        DiscreteTimeHazard(interval_months=interval).fit(_X, _Y)


def test_a_follow_up_shorter_than_120_months_is_refused() -> None:
    with pytest.raises(ValueError, match="max_months must reach the horizon 120"):
        DiscreteTimeHazard(max_months=96.0).fit(_X, _Y)


def test_negative_times_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        DiscreteTimeHazard().fit(_X, np.array([[-1.0, 1], [2.0, 0], [3.0, 1], [4.0, 0]]))
    with pytest.raises(ValueError, match="different numbers"):
        DiscreteTimeHazard().fit(_X[:3], _Y)


# -- the sklearn contract -----------------------------------------------------------------------


def test_constructor_parameters_are_keyword_only() -> None:
    params = inspect.signature(DiscreteTimeHazard.__init__).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY for p in params if p.name != "self")


def test_clone_params_and_fitted_attributes(early_vs_never: Fitted) -> None:
    model, X, _ = early_vs_never
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "booster_")
    copy.set_params(interval_months=12.0)
    assert copy.interval_months == 12.0
    before = set(vars(copy))
    copy.fit(X, _groups(600, rate_a=0.025, rate_b=0.0, censor_b=None, seed=0)[1])
    added = set(vars(copy)) - before
    assert {"booster_", "n_features_in_", "n_person_periods_"} <= added
    assert all(name.endswith("_") for name in added), added
    assert copy.hazards(X[:2]).shape == (2, 15)  # 180 months in 12-month intervals


@pytest.mark.parametrize("method", ["predict", "predict_outputs", "hazards", "contributions"])
def test_unfitted_model_raises_not_fitted(method: str) -> None:
    with pytest.raises(NotFittedError):
        getattr(DiscreteTimeHazard(), method)(np.zeros((2, 2)))


# -- hazard calibration ---------------------------------------------------------------------------


def test_calibration_undoes_the_pull_of_an_over_penalised_booster() -> None:
    """A heavy L2 penalty against the tiny hessians of rare events keeps the booster near the
    average hazard; held-out person-period rows show it (Platt slope above 1), and the
    calibrated risks move back towards the true ones."""
    X, y, g = _groups(1200, rate_a=0.03, rate_b=0.003, censor_b=None, seed=4)
    shrunk = {**SMALL, "n_estimators": 15, "reg_lambda": 500.0, "learning_rate": 0.05}
    raw = DiscreteTimeHazard(**shrunk, calibration="none").fit(X, y)
    calibrated = DiscreteTimeHazard(**shrunk, calibration="sigmoid").fit(X, y)
    assert raw._calibration().slope == 1.0 and raw._calibration().intercept == 0.0
    assert calibrated._calibration().slope > 1.0
    truth = 1 - np.exp(-np.where(g == 1, 0.03, 0.003) * 60)
    error = {
        name: np.abs(m.predict_outputs(X)[:, 1] - truth).mean()
        for name, m in (("raw", raw), ("calibrated", calibrated))
    }
    assert error["calibrated"] < error["raw"] / 2
    # the contributions stay exact in the calibrated log-odds
    hazards = calibrated.hazards(X[:5])
    contrib = calibrated.contributions(X[:5], at_months=60.0)
    np.testing.assert_allclose(contrib.sum(axis=1), logit(hazards[:, 10]), rtol=0, atol=1e-9)


def test_held_out_patients_calibrate_without_extra_fits() -> None:
    """``held_out`` (a bootstrap member's out-of-bag patients): the Platt fit of the booster's
    margins on those patients' person-period rows, the statistic written out by hand."""
    from metapredict.models.boosting import Platt

    X, y, _ = _groups(800, rate_a=0.03, rate_b=0.003, censor_b=None, seed=5)
    fit_rows, held = np.arange(0, 800, 2), np.arange(1, 800, 2)
    model = DiscreteTimeHazard(**SMALL, calibration="sigmoid")
    model.fit(X[fit_rows], y[fit_rows], held_out=(X[held], y[held]))
    time, event = survival_arrays(y[held])
    rows, target = person_period(X[held], time, event, 6.0, 30)
    expected = Platt.fit(model.booster_.predict(rows, raw_score=True), target)
    assert expected.slope > 0  # a positive slope is kept as fitted (a negative one never is)
    assert model._calibration().slope == pytest.approx(expected.slope, rel=1e-9)
    assert model._calibration().intercept == pytest.approx(expected.intercept, rel=1e-9)
