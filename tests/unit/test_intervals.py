"""Prediction intervals: every output gets one, it contains the point estimate, stays in [0, 1],
is the same from the single-row path and the batch path, survives pickling; old models load
without intervals."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from metapredict import features, schema
from metapredict.feature_encoder import FeatureEncoder
from metapredict.models.dormancy import DiscreteTimeHazard
from metapredict.models.ensemble import BootstrapEnsemble, IntervalConfig, fit_ensemble
from metapredict.models.fast_rows import FAST_ROWS
from metapredict.models.tropism import TropismClassifier
from metapredict.models.tropism_model import TropismModel
from metapredict.predictor import Predictor
from tests.support import types_of

CAT = features.categorical_indices()
MONTHS, EVENT = schema.survival_columns()
MEMBERS = 4


@pytest.fixture(scope="module")
def rows(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    return simulated_cohort.head(800)


@pytest.fixture(scope="module")
def probe(simulated_cohort: pd.DataFrame) -> pd.DataFrame:
    """Unseen resected patients, features only: more than the single-row path takes."""
    resected = simulated_cohort[simulated_cohort["stage"].astype(object) != "IV"]
    return resected[list(schema.feature_columns())].iloc[-(FAST_ROWS + 14) :]


def _tropism(rows: pd.DataFrame, members: int = MEMBERS, level: float = 0.9) -> Predictor:
    relapsed = rows[rows[EVENT]]
    types = types_of(relapsed)
    X = features.encode_frame(relapsed, types)
    y = relapsed[list(schema.site_columns())].to_numpy()
    model = TropismClassifier(
        n_estimators=15, calibration="sigmoid", calibration_folds=2, categorical_features=CAT
    ).fit(X, y)
    return Predictor(
        task="tropism",
        model=model.model_,
        feature_ranges=FeatureEncoder().fit(relapsed).feature_ranges_,
        categories={"cancer_type": types, "stage": schema.STAGES},
        sites=schema.sites(),
        intervals=fit_ensemble(
            model, X, y, config=IntervalConfig(members=members, level=level), seed=3
        ),
    )


def _dormancy(rows: pd.DataFrame, members: int = MEMBERS) -> Predictor:
    types = types_of(rows)
    X = features.encode_frame(rows, types)
    y = Surv.from_arrays(event=rows[EVENT].to_numpy(bool), time=rows[MONTHS].to_numpy(float))
    model = DiscreteTimeHazard(n_estimators=15, min_child_samples=20, categorical_features=CAT)
    model.fit(X, y)
    return Predictor(
        task="dormancy",
        model=model.model_,
        feature_ranges=FeatureEncoder().fit(rows).feature_ranges_,
        risk_cutoffs=(0.2, 0.5),
        categories={"cancer_type": types, "stage": schema.STAGES[:3]},
        intervals=fit_ensemble(model, X, y, config=IntervalConfig(members=members), seed=3),
    )


@pytest.fixture(scope="module")
def predictors(rows: pd.DataFrame) -> dict[str, Predictor]:
    return {"tropism": _tropism(rows), "dormancy": _dormancy(rows)}


TASKS = ("tropism", "dormancy")


@pytest.mark.parametrize("task", TASKS)
def test_every_output_has_an_interval_containing_its_point_estimate(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    predictor = predictors[task]
    X = predictor.encode_frame(probe)
    outputs = predictor.predict_matrix(X)
    bounds = predictor.interval_bounds(X, outputs)
    assert bounds is not None
    assert bounds.shape == (len(probe), len(predictor.output_names), 2)
    lower, upper = bounds[..., 0], bounds[..., 1]
    assert (lower <= outputs).all() and (outputs <= upper).all()
    assert (lower >= 0.0).all() and (upper <= 1.0).all()
    assert (upper - lower > 0).mean() > 0.9, "members that never disagree: no intervals at all"
    assert predictor.interval_level == 0.9


@pytest.mark.parametrize("task", TASKS)
def test_single_row_path_gives_the_batch_paths_intervals(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    predictor = predictors[task]
    X = predictor.encode_frame(probe)
    assert X.shape[0] > FAST_ROWS  # the batch path (Booster.predict)
    outputs = predictor.predict_matrix(X)
    batch = predictor.interval_bounds(X, outputs)
    single = np.concatenate(
        [predictor.interval_bounds(X[i : i + 1], outputs[i : i + 1]) for i in range(len(X))]  # type: ignore[misc]
    )
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-12)


@pytest.mark.parametrize("task", TASKS)
def test_batch_output_names_each_bound_after_the_point_estimates(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    predictor = predictors[task]
    batch = predictor.predict_batch(probe)
    names = list(predictor.output_names)
    assert list(batch.columns) == [
        *names,
        *(f"{n}_{side}" for n in names for side in ("lower", "upper")),
    ]
    assert list(batch.index) == list(probe.index)
    np.testing.assert_array_equal(batch[names].to_numpy(), predictor.predict(probe).to_numpy())
    for n in names:
        assert (batch[f"{n}_lower"] <= batch[n]).all()
        assert (batch[n] <= batch[f"{n}_upper"]).all()


def test_a_higher_level_gives_wider_intervals(rows: pd.DataFrame, probe: pd.DataFrame) -> None:
    narrow, wide = _tropism(rows, level=0.8), _tropism(rows, level=0.95)
    X = narrow.encode_frame(probe)
    outputs = narrow.predict_matrix(X)
    a, b = narrow.interval_bounds(X, outputs), wide.interval_bounds(X, outputs)
    assert a is not None and b is not None
    assert (b[..., 0] <= a[..., 0]).all() and (b[..., 1] >= a[..., 1]).all()
    assert (b[..., 1] - b[..., 0]).mean() > (a[..., 1] - a[..., 0]).mean()


def test_tropism_members_refit_their_own_calibration(
    predictors: dict[str, Predictor], probe: pd.DataFrame
) -> None:
    main = predictors["tropism"].model
    ensemble = predictors["tropism"].intervals
    assert isinstance(main, TropismModel) and ensemble is not None
    assert len(ensemble.members) == MEMBERS
    for member in ensemble.members:
        assert isinstance(member, TropismModel)
        # bias-corrected members: the same model boosted for twice the rounds (twicing)
        assert member.params["n_estimators"] == 2 * main.params["n_estimators"]  # type: ignore[operator]
        assert member.params["calibration"] == main.params["calibration"]
    # the calibration is part of what a member re-estimates on its resample
    assert any(m.calibrators != main.calibrators for m in ensemble.members)  # type: ignore[union-attr]
    # the single-row fast path applies each member's own calibration, as the batch path does
    X = predictors["tropism"].encode_frame(probe)
    batch = ensemble.member_logits(X)
    for i in range(min(3, X.shape[0])):
        np.testing.assert_allclose(ensemble.member_logits(X[i : i + 1])[:, 0], batch[:, i])


@pytest.mark.parametrize("task", TASKS)
def test_intervals_survive_pickling(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    predictor = predictors[task]
    X = predictor.encode_frame(probe.head(3))
    predictor.interval_bounds(X, predictor.predict_matrix(X))  # builds fast handles first
    loaded = pickle.loads(pickle.dumps(predictor))
    outputs = loaded.predict_matrix(X)
    np.testing.assert_array_equal(
        loaded.interval_bounds(X, outputs), predictor.interval_bounds(X, outputs)
    )


def test_no_members_means_no_intervals(predictors: dict[str, Predictor]) -> None:
    main = predictors["tropism"].model
    assert isinstance(main, TropismModel)
    estimator = TropismClassifier()
    assert (
        fit_ensemble(estimator, np.zeros((4, 1)), None, config=IntervalConfig(members=0), seed=0)
        is None
    )
    with pytest.raises(ValueError, match="at least 2 members"):
        BootstrapEnsemble([main], 0.9)


@pytest.mark.parametrize("task", TASKS)
def test_a_model_saved_before_intervals_loads_without_them(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    predictor = predictors[task]
    old = Predictor.__new__(Predictor)
    old.__dict__.update({k: v for k, v in predictor.__dict__.items() if k != "intervals"})
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.intervals is None and loaded.interval_level is None
    X = loaded.encode_frame(probe)
    assert loaded.interval_bounds(X, loaded.predict_matrix(X)) is None
    assert loaded.batch_columns == loaded.output_names
    pd.testing.assert_frame_equal(loaded.predict_batch(probe), loaded.predict(probe))
    assert replace(predictor, intervals=None).batch_columns == predictor.output_names


@pytest.mark.parametrize("task", TASKS)
def test_served_spread_follows_the_members_own(
    predictors: dict[str, Predictor], rows: pd.DataFrame, task: str
) -> None:
    """The spread model stands in for predicting every member: it must say what they say."""
    ensemble = predictors[task].intervals
    assert ensemble is not None and ensemble.spread_boosters is not None
    X = predictors[task].encode_frame(rows)
    factor = np.abs(np.log(ensemble.spread(X) / ensemble.exact_spread(X)))
    assert np.exp(np.median(factor)) < 1.5
    outputs = predictors[task].predict_matrix(X)
    exact = ensemble.bounds(X, outputs, exact=True)
    assert (exact[..., 0] <= outputs).all() and (outputs <= exact[..., 1]).all()


def test_fewer_members_give_a_wider_multiplier(predictors: dict[str, Predictor]) -> None:
    """The spread comes from the members themselves: with few of them the half-width takes
    Student's t quantile, wider than the normal one, and nearer to it as members are added."""
    member = predictors["tropism"].model
    assert isinstance(member, TropismModel)
    three, ten = BootstrapEnsemble([member] * 3, 0.9), BootstrapEnsemble([member] * 10, 0.9)
    assert three.z > ten.z > 1.6449
    assert ten.z == pytest.approx(1.833, abs=1e-3)


@pytest.mark.parametrize("task", TASKS)
def test_bias_corrected_interval_is_centred_on_the_members_mean(
    predictors: dict[str, Predictor], probe: pd.DataFrame, task: str
) -> None:
    """The statistic, written out: on the log-odds scale the interval is the members' mean
    +/- t(members - 1) * sqrt(1 + 1/members) * their sd, joined with the point estimate."""
    from scipy.stats import t

    predictor = predictors[task]
    ensemble = predictor.intervals
    assert ensemble is not None and ensemble.bias_corrected
    X = predictor.encode_frame(probe)
    outputs = predictor.predict_matrix(X)
    logits = ensemble.member_logits(X)
    centre, sd = logits.mean(axis=0), logits.std(axis=0, ddof=1)
    z = t.ppf(0.95, df=MEMBERS - 1) * np.sqrt(1 + 1 / MEMBERS)
    assert ensemble.z == pytest.approx(z)
    expected_lower = np.minimum(1 / (1 + np.exp(-(centre - z * sd))), outputs)
    expected_upper = np.maximum(1 / (1 + np.exp(-(centre + z * sd))), outputs)
    exact = ensemble.bounds(X, outputs, exact=True)
    np.testing.assert_allclose(exact[..., 0], expected_lower, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(exact[..., 1], expected_upper, rtol=1e-9, atol=1e-12)
    # the served centre model stands in for the members' mean (minus the point estimate)
    assert ensemble.centre_boosters is not None
    served = ensemble.bounds(X, outputs)
    assert np.median(np.abs(served - exact)) < 0.05


def test_members_without_bias_correction_repeat_the_point_model(rows: pd.DataFrame) -> None:
    """``bias_correction = false``: members with the point model's own rounds, the interval
    centred on the point estimate (the estimation uncertainty alone)."""
    relapsed = rows[rows[EVENT]]
    X = features.encode_frame(relapsed, types_of(relapsed))
    y = relapsed[list(schema.site_columns())].to_numpy()
    model = TropismClassifier(n_estimators=10, calibration="none", categorical_features=CAT)
    model.fit(X, y)
    config = IntervalConfig(members=3, bias_correction=False, spread_model=False)
    ensemble = fit_ensemble(model, X, y, config=config, seed=1)
    assert ensemble is not None and not ensemble.bias_corrected
    assert all(m.params["n_estimators"] == 10 for m in ensemble.members)
    outputs = model.predict_proba(X[:20])
    bounds = np.log(ensemble.bounds(X[:20], outputs) / (1 - ensemble.bounds(X[:20], outputs)))
    centre = np.log(outputs / (1 - outputs))
    np.testing.assert_allclose(bounds[..., 0] + bounds[..., 1], 2 * centre, atol=1e-6)


def test_tropism_members_calibrate_on_their_out_of_bag_patients(rows: pd.DataFrame) -> None:
    """A member calibrates on the patients its resample left out: folds inside a resample
    would hold copies of one patient on both sides (its margins look better than they are)."""
    from metapredict.models.boosting import Platt

    relapsed = rows[rows[EVENT]]
    X = features.encode_frame(relapsed, types_of(relapsed))
    y = relapsed[list(schema.site_columns())].to_numpy().astype(bool)
    half = np.arange(len(X)) % 2 == 0
    model = TropismClassifier(n_estimators=10, calibration="sigmoid", categorical_features=CAT)
    model.fit(X[half], y[half], held_out=(X[~half], y[~half]))
    for k, (booster, calibrator) in enumerate(
        zip(model.boosters_, model.calibrators_, strict=True)
    ):
        expected = Platt.fit(booster.predict(X[~half], raw_score=True), y[~half, k])
        if expected.slope <= 0:  # never a reversed ranking (boosting.choose_calibration)
            expected = Platt()
        assert calibrator.slope == pytest.approx(expected.slope, rel=1e-9)
        assert calibrator.intercept == pytest.approx(expected.intercept, rel=1e-9)
