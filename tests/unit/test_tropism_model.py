"""TropismClassifier and the shared boosting helpers, on tiny hand-made data."""

from __future__ import annotations

import inspect
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import expit, logit
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from metapredict.models.boosting import Platt, booster_params, brier, choose_calibration
from metapredict.models.tropism import TropismClassifier

Data = tuple[NDArray[np.float64], NDArray[np.bool_]]

SMALL: dict[str, Any] = {"n_estimators": 20, "num_leaves": 3, "min_child_samples": 10, "n_jobs": 1}


def _two_sites(n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Site 0 follows feature 0, site 1 follows feature 1; features 2-3 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    p = expit(np.column_stack([-1.0 + 1.5 * X[:, 0], -0.5 - 1.5 * X[:, 1]]))
    return X, rng.random(p.shape) < p


@pytest.fixture(scope="module")
def data() -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    return _two_sites(300, seed=0)


@pytest.fixture(scope="module")
def sigmoid_model(data: Data) -> TropismClassifier:
    X, Y = data
    return TropismClassifier(calibration="sigmoid", **SMALL).fit(X, Y)


# -- Platt scaling and the calibration choice ---------------------------------------------------


def test_platt_applies_a_sigmoid_of_a_linear_margin_and_identity_by_default() -> None:
    margin = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(Platt().apply(margin), expit(margin))
    np.testing.assert_allclose(Platt(2.0, -1.0).apply(margin), expit(2.0 * margin - 1.0))


@pytest.mark.parametrize("value", [True, False])
def test_platt_fit_on_one_class_is_the_identity(value: bool) -> None:
    assert Platt.fit(np.array([-1.0, 0.0, 2.0]), np.full(3, value)) == Platt()


def test_calibration_modes_none_and_sigmoid() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(0.0, 1.0, 500)
    y = rng.random(500) < expit(truth)
    overconfident = 3.0 * truth
    assert choose_calibration(overconfident, y, "none", 0) == Platt()
    fitted = choose_calibration(overconfident, y, "sigmoid", 0)
    assert fitted.slope == pytest.approx(1 / 3, abs=0.1)


@pytest.mark.parametrize("mode", ["sigmoid", "auto"])
def test_calibration_never_reverses_the_ranking(mode: str) -> None:
    """Held-out margins that point the wrong way (noise on a small cohort) fit a negative
    slope, which would turn the model's ranking upside down: the margin stays as it is."""
    rng = np.random.default_rng(3)
    truth = rng.normal(0.0, 1.0, 400)
    y = rng.random(400) < expit(truth)
    reversed_margin = -2.0 * truth
    assert Platt.fit(reversed_margin, y).slope < 0  # what an unconstrained fit would keep
    assert choose_calibration(reversed_margin, y, mode, 0) == Platt()


def test_auto_keeps_platt_when_it_lowers_out_of_fold_brier() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(0.0, 1.0, 1000)
    y = rng.random(1000) < expit(truth)
    overconfident = 3.0 * truth - 1.0
    chosen = choose_calibration(overconfident, y, "auto", 0)
    assert chosen != Platt()
    assert brier(y, chosen.apply(overconfident)) < brier(y, expit(overconfident))


def test_auto_keeps_the_identity_when_platt_cannot_help() -> None:
    # Every margin already is the base rate: the best constant. A cross-fitted Platt predicts
    # the *other* half's rate, which is further from each half's own rate, so it loses.
    y = np.arange(200) % 10 < 3
    margin = np.full(200, logit(y.mean()))
    assert choose_calibration(margin, y, "sigmoid", 0) != Platt()
    assert choose_calibration(margin, y, "auto", 0) == Platt()


def test_booster_params_map_the_sklearn_names() -> None:
    common = {
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_child_samples": 11,
        "colsample_bytree": 0.5,
        "reg_lambda": 2.0,
        "random_state": 3,
        "n_jobs": 2,
    }
    bagged = booster_params(subsample=0.8, **common)
    assert (bagged["bagging_fraction"], bagged["bagging_freq"]) == (0.8, 1)
    assert booster_params(subsample=1.0, **common)["bagging_freq"] == 0  # no bagging at all
    assert bagged["min_data_in_leaf"] == 11
    assert bagged["feature_fraction"] == 0.5
    assert bagged["lambda_l2"] == 2.0
    assert bagged["seed"] == 3
    assert bagged["deterministic"] is True
    assert bagged["scale_pos_weight"] == 1.0


# -- TropismClassifier --------------------------------------------------------------------------


def test_outputs_have_one_column_per_site(sigmoid_model: TropismClassifier, data: Data) -> None:
    X, _ = data
    proba = sigmoid_model.predict_proba(X[:7])
    assert proba.shape == (7, 2)
    assert ((proba > 0) & (proba < 1)).all()
    np.testing.assert_array_equal(sigmoid_model.predict(X[:7]), proba >= 0.5)
    np.testing.assert_allclose(proba, expit(sigmoid_model.margins(X[:7])), rtol=1e-12)


def test_each_site_learns_its_own_feature(sigmoid_model: TropismClassifier) -> None:
    probe = np.zeros((2, 4))
    probe[1, :2] = 1.5
    proba = sigmoid_model.predict_proba(probe)
    assert proba[1, 0] > proba[0, 0]  # site 0 rises with feature 0
    assert proba[1, 1] < proba[0, 1]  # site 1 falls with feature 1
    importance = sigmoid_model.feature_importance()
    assert importance.shape == (4,)
    assert importance.sum() == pytest.approx(1.0)
    assert (importance >= 0).all()
    assert importance[:2].min() > importance[2:].max()


def test_contributions_sum_exactly_to_the_calibrated_margins(
    sigmoid_model: TropismClassifier, data: Data
) -> None:
    X, _ = data
    X = X[:25].copy()
    X[0, 2] = np.nan  # missing values are explained too
    assert all(c != Platt() for c in sigmoid_model.calibrators_), "need a non-identity Platt"
    contrib = sigmoid_model.contributions(X)
    assert contrib.shape == (25, 2, 5)
    np.testing.assert_allclose(contrib.sum(axis=2), sigmoid_model.margins(X), rtol=0, atol=1e-9)


def test_calibration_none_keeps_the_raw_booster_output(data: Data) -> None:
    X, Y = data
    model = TropismClassifier(calibration="none", **SMALL).fit(X, Y)
    assert model.calibrators_ == [Platt(), Platt()]
    for k, booster in enumerate(model.boosters_):
        raw = booster.predict(X, raw_score=True)
        np.testing.assert_allclose(model.margins(X)[:, k], raw, rtol=0, atol=1e-12)


def test_auto_calibration_undoes_the_balance_weighting() -> None:
    """balance=True up-weights the rare positives; Platt scaling brings the mean back down."""

    def draw(n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, 4))
        return X, expit(-2.6 + X[:, 0])  # ~9 % positives

    X, p = draw(600, seed=0)
    y = np.random.default_rng(10).random(600) < p
    X_new, p_new = draw(3000, seed=1)
    params = {**SMALL, "n_estimators": 30, "min_child_samples": 20, "balance": True}
    raw = TropismClassifier(calibration="none", **params).fit(X, y)
    auto = TropismClassifier(calibration="auto", **params).fit(X, y)

    assert auto.calibrators_[0] != Platt()
    raw_mean = raw.predict_proba(X_new)[:, 0].mean()
    auto_mean = auto.predict_proba(X_new)[:, 0].mean()
    assert raw_mean > p_new.mean() + 0.04  # the weighting inflates probabilities
    assert abs(auto_mean - p_new.mean()) < 0.025
    outcome = np.random.default_rng(11).random(3000) < p_new
    assert brier(outcome, auto.predict_proba(X_new)[:, 0]) < brier(
        outcome, raw.predict_proba(X_new)[:, 0]
    )


def test_same_random_state_gives_identical_predictions(data: Data) -> None:
    X, Y = data
    params = {**SMALL, "subsample": 0.7, "colsample_bytree": 0.5, "random_state": 4}
    first = TropismClassifier(**params).fit(X, Y).predict_proba(X)
    second = TropismClassifier(**params).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_sites_trained_in_parallel_give_the_same_model_as_one_by_one() -> None:
    X, Y = _two_sites(400, seed=2)
    Y = np.column_stack([Y, ~Y[:, 0], Y[:, 1] & Y[:, 0]])  # four sites: two threads share them
    params = {**SMALL, "subsample": 0.7, "random_state": 3, "calibration": "sigmoid"}
    serial = TropismClassifier(**{**params, "n_jobs": 1}).fit(X, Y)
    parallel = TropismClassifier(**{**params, "n_jobs": 2}).fit(X, Y)
    assert [b.model_to_string() for b in parallel.boosters_] == [
        b.model_to_string() for b in serial.boosters_
    ]
    assert parallel.calibrators_ == serial.calibrators_
    assert len(parallel.boosters_) == 4


def test_sites_trained_side_by_side_agree_on_lightgbm_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LightGBM keeps ``num_threads`` process-wide: a prediction at its default while another
    site trained on one thread crashed ``lib_lightgbm.so`` (tropism, 100,000 patients)."""
    seen: list[int] = []
    real_train, real_predict = lgb.train, lgb.Booster.predict

    def train(params: dict[str, Any], *args: Any, **kwargs: Any) -> lgb.Booster:
        seen.append(int(params["num_threads"]))
        return real_train(params, *args, **kwargs)

    def predict(self: lgb.Booster, data: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(int(kwargs.get("num_threads", 0)))
        return real_predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb, "train", train)
    monkeypatch.setattr(lgb.Booster, "predict", predict)
    X, Y = _two_sites(400, seed=2)
    TropismClassifier(**{**SMALL, "n_jobs": 2, "calibration": "sigmoid"}).fit(X, Y)
    assert len(seen) >= 2 * 4, "every site: calibration folds (train + predict) and a final fit"
    assert set(seen) == {1}


def test_small_batches_give_the_same_outputs_as_large_ones(
    sigmoid_model: TropismClassifier, data: Data
) -> None:
    """Batches of a few rows take a single-row fast path; it must agree with the batch path."""
    X, _ = data
    few, many = X[:3], X[:40]
    np.testing.assert_allclose(
        sigmoid_model.margins(few), sigmoid_model.margins(many)[:3], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        sigmoid_model.contributions(few), sigmoid_model.contributions(many)[:3], rtol=0, atol=1e-12
    )


def test_refitting_replaces_the_model_for_small_batches_too(data: Data) -> None:
    X, Y = data
    model = TropismClassifier(**SMALL).fit(X, Y)
    model.predict_proba(X[:3])  # builds the single-row fast path for the first boosters
    model.set_params(n_estimators=10).fit(X, ~Y)
    fresh = TropismClassifier(**{**SMALL, "n_estimators": 10}).fit(X, ~Y)
    np.testing.assert_array_equal(model.predict_proba(X[:3]), fresh.predict_proba(X[:3]))
    np.testing.assert_array_equal(model.contributions(X[:3]), fresh.contributions(X[:3]))


def test_an_unknown_calibration_is_refused(data: Data) -> None:
    X, Y = data
    with pytest.raises(ValueError, match="calibration must be"):
        TropismClassifier(calibration="isotonic", **SMALL).fit(X, Y)


@pytest.mark.parametrize("value", [False, True], ids=["never", "always"])
def test_a_site_with_a_single_class_does_not_crash(data: Data, value: bool) -> None:
    X, Y = data
    Y = Y.copy()
    Y[:, 1] = value
    model = TropismClassifier(calibration="auto", **SMALL).fit(X, Y)
    proba = model.predict_proba(X[:10])
    assert np.isfinite(proba).all()
    assert ((proba[:, 1] > 0.9) if value else (proba[:, 1] < 0.1)).all()
    assert np.isfinite(model.contributions(X[:10])).all()


def test_one_dimensional_labels_give_one_site(data: Data) -> None:
    X, Y = data
    model = TropismClassifier(**SMALL).fit(X, Y[:, 0].astype(int))
    assert model.n_outputs_ == 1
    assert model.predict_proba(X[:3]).shape == (3, 1)


@pytest.mark.parametrize(
    "labels",
    [np.arange(300) % 3, np.where(np.arange(300) % 2, 1, 2), np.linspace(0, 1, 300)],
    ids=["multiclass", "one-two", "continuous"],
)
def test_labels_other_than_0_1_are_refused_not_coerced(data: Data, labels: NDArray[Any]) -> None:
    X, _ = data
    with pytest.raises(ValueError, match=r"binary|0/1"):
        TropismClassifier(**SMALL).fit(X, labels)


# -- the sklearn contract -----------------------------------------------------------------------


def test_constructor_parameters_are_keyword_only() -> None:
    params = inspect.signature(TropismClassifier.__init__).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY for p in params if p.name != "self")
    with pytest.raises(TypeError):
        TropismClassifier(10)


def test_clone_and_params_round_trip(sigmoid_model: TropismClassifier) -> None:
    copy = clone(sigmoid_model)
    assert copy.get_params() == sigmoid_model.get_params()
    assert not hasattr(copy, "boosters_")
    copy.set_params(n_estimators=7, calibration="none")
    assert copy.get_params()["n_estimators"] == 7
    assert TropismClassifier(**copy.get_params()).get_params() == copy.get_params()


def test_fitted_attributes_end_in_underscore(data: Data) -> None:
    X, Y = data
    model = TropismClassifier(**SMALL)
    before = set(vars(model))
    model.fit(X, Y)
    added = set(vars(model)) - before
    assert {"boosters_", "calibrators_", "n_outputs_", "classes_", "n_features_in_"} <= added
    assert all(name.endswith("_") for name in added), added


@pytest.mark.parametrize("method", ["predict_proba", "predict", "margins", "contributions"])
def test_unfitted_model_raises_not_fitted(method: str) -> None:
    with pytest.raises(NotFittedError):
        getattr(TropismClassifier(), method)(np.zeros((2, 4)))


def test_unfitted_feature_importance_raises_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        TropismClassifier().feature_importance()


_LABELS_MUST_BE_0_1 = (
    "labels must be 0/1 or boolean (site involved or not); the check uses labels like {1, 2} "
    "or strings, which are refused rather than silently coerced to bool"
)
_MULTI_LABEL_SHAPE = (
    "multi-label by design: 1-D y is one site, so predict/predict_proba return (n, 1), "
    "not (n,) / (n, 2)"
)
_BOOL_PREDICTIONS = "predict returns booleans (site involved or not), not the label dtype"

EXPECTED_FAILED_CHECKS = {
    "check_estimators_dtypes": _LABELS_MUST_BE_0_1,
    "check_classifier_data_not_an_array": _LABELS_MUST_BE_0_1,
    "check_classifiers_classes": _LABELS_MUST_BE_0_1,
    "check_fit2d_1feature": _LABELS_MUST_BE_0_1,
    "check_classifiers_one_label": _MULTI_LABEL_SHAPE,
    "check_classifiers_train": _MULTI_LABEL_SHAPE,
    "check_classifier_multioutput": _BOOL_PREDICTIONS,
    "check_classifiers_multilabel_output_format_predict": _BOOL_PREDICTIONS,
}


# Without calibration: the checks are about the API, and the cross-fitted calibration would
# make them four times slower; calibration has its own tests above.
@parametrize_with_checks(
    [TropismClassifier(n_estimators=5, min_child_samples=1, calibration="none", n_jobs=1)],
    expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS,
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator: TropismClassifier, check: object) -> None:
    check(estimator)  # type: ignore[operator]
